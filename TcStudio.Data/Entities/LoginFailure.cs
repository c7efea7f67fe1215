namespace TcStudio.Data.Entities;

/// <summary>
/// Failed sign-in attempts counted against one username or one client address, shared by every API instance.
/// An attempt counts from the moment it is let through (before its password is checked) until it succeeds, so a
/// burst cannot get more attempts checked than the limit. Rows are only ever changed by the SQL functions of the
/// <c>LoginThrottle</c> migration, which check and record in one statement under row locks.
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
    public DateTimeOffset LastFailureAt { get; set; }

    /// <summary>Until when attempts are refused (from addresses with failures of their own, for a username).</summary>
    public DateTimeOffset? LockedUntil { get; set; }

    /// <summary>When the row is forgotten: the quiet period after the last failure or the end of the lock.</summary>
    public DateTimeOffset ExpiresAt { get; set; }
}
