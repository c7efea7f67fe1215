namespace TcStudio.SystemDatabase.Entities;

/// <summary>
/// A POST that carried an <c>Idempotency-Key</c> and succeeded: the key (per user), a fingerprint of the request, and
/// the response it got, so a retry with the same key replays that response instead of doing the work again. Written
/// in the same transaction as the work; deleted once <see cref="ExpiresAt"/> has passed.
/// </summary>
public sealed class IdempotencyKey
{
    public const int KeyMaxLength = 255;
    public const int PathMaxLength = 2048;

    public Guid UserId { get; set; }
    public required string Key { get; set; }

    /// <summary>SHA-256 of the method, path, query and body: the same key with another request is refused.</summary>
    public required byte[] RequestHash { get; set; }

    /// <summary>What the key was first used for (method and path, for people reading the table; never the body).</summary>
    public required string Method { get; set; }
    public required string Path { get; set; }

    public int StatusCode { get; set; }
    public string? ContentType { get; set; }
    public string? Location { get; set; }
    public string? ETag { get; set; }
    public required byte[] ResponseBody { get; set; }

    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
}
