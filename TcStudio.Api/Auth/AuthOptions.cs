namespace TcStudio.Api.Auth;

/// <summary>The configuration section <c>Auth</c>.</summary>
public sealed class AuthOptions
{
    public const string SectionName = "Auth";
    public const string Issuer = "tcstudio";
    public const string Audience = "tcstudio-api";

    /// <summary>HMAC-SHA256 key: at least 32 bytes (base64, or plain text). Required outside Development. Never logged.</summary>
    public string? SigningKey { get; set; }

    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromMinutes(60);

    public LoginRateLimitOptions LoginRateLimit { get; set; } = new();

    /// <summary>
    /// How long a verified session (user active, not deleted, token not revoked) is trusted before it is checked
    /// against the database again. This process forgets it at once when it changes the user itself.
    /// </summary>
    public TimeSpan SessionCheckInterval { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// <c>Auth:LoginRateLimit</c>: failed sign-ins allowed per username and per client address (see <see cref="LoginThrottle"/>).
/// </summary>
public sealed class LoginRateLimitOptions
{
    /// <summary>Failures of one username before it is locked (for addresses with failures of their own).</summary>
    public int PermitLimitPerUsername { get; set; } = 5;

    /// <summary>Failures from one client address before it is refused for <see cref="Window"/>.</summary>
    public int PermitLimitPerAddress { get; set; } = 20;

    /// <summary>How long an address stays refused, and how long a count is kept after its last failure or lock.</summary>
    public TimeSpan Window { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The first lock of a username; each further failure doubles it.</summary>
    public TimeSpan BackoffBase { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The longest lock of a username.</summary>
    public TimeSpan BackoffMax { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>How often forgotten counts are deleted.</summary>
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>One line naming the first unusable value, or null.</summary>
    public string? FindError()
    {
        const string prefix = "Auth:LoginRateLimit:";
        if (PermitLimitPerUsername < 1) return $"{prefix}PermitLimitPerUsername must be 1 or more.";
        if (PermitLimitPerAddress < 1) return $"{prefix}PermitLimitPerAddress must be 1 or more.";
        if (Window <= TimeSpan.Zero) return $"{prefix}Window must be a positive duration (hh:mm:ss).";
        if (BackoffBase <= TimeSpan.Zero) return $"{prefix}BackoffBase must be a positive duration (hh:mm:ss).";
        if (BackoffMax < BackoffBase) return $"{prefix}BackoffMax must be at least BackoffBase.";
        if (CleanupInterval <= TimeSpan.Zero) return $"{prefix}CleanupInterval must be a positive duration (hh:mm:ss).";
        return null;
    }
}
