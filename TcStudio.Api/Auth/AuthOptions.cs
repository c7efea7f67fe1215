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

/// <summary><c>Auth:LoginRateLimit</c>: failed logins allowed per window, per username and per client address.</summary>
public sealed class LoginRateLimitOptions
{
    public int PermitLimitPerUsername { get; set; } = 5;
    public int PermitLimitPerAddress { get; set; } = 20;
    public TimeSpan Window { get; set; } = TimeSpan.FromMinutes(5);
}
