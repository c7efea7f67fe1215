namespace TcStudio.SystemDatabase.Entities;

/// <summary>
/// Sign-in attempts counted against one username or one client address, shared by every API instance: failures, and
/// attempts let through whose password is still being checked (<see cref="Pending"/>), so that a burst cannot get more
/// guesses checked than the limit allows. Rows are only changed by the SQL functions of the <c>LoginThrottle</c>
/// migration, which check and record in one statement each, under row locks.
/// </summary>
public sealed class LoginFailure
{
    public const string UsernamePrefix = "username:";
    public const string AddressPrefix = "address:";
    public const int KeyMaxLength = 100;

    /// <summary>
    /// <c>username:</c> and the SHA-256 of the lower-cased username (hex; the table never holds what was typed, which
    /// is sometimes a password), or <c>address:</c> and the client address (an IPv6 client by its /64 network).
    /// </summary>
    public string Key { get; set; } = "";

    public int Failures { get; set; }
    public DateTimeOffset? LastFailureAt { get; set; }

    /// <summary>Until when attempts are refused (for a username: from addresses with failures or attempts of their own).</summary>
    public DateTimeOffset? LockedUntil { get; set; }

    /// <summary>Attempts let through and not decided yet.</summary>
    public int Pending { get; set; }

    /// <summary>When <see cref="Pending"/> is considered stale (an attempt that never reported back).</summary>
    public DateTimeOffset? PendingExpiresAt { get; set; }

    /// <summary>When the row is forgotten: the quiet period after the last failure, lock or pending attempt.</summary>
    public DateTimeOffset ExpiresAt { get; set; }
}
