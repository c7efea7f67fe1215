using Microsoft.AspNetCore.Identity;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Slow, salted password hashes (ASP.NET Core Identity's PBKDF2-HMAC-SHA512, 100,000 iterations), shared by the
/// seeder and the API so both produce and accept the same format.
/// </summary>
public static class PasswordHashing
{
    private static readonly PasswordHasher<User> Hasher = new();

    public static string Hash(string password) => Hasher.HashPassword(null!, password);

    /// <summary>True when the password matches; <paramref name="rehashNeeded"/> when the stored format is outdated.</summary>
    public static bool Verify(string hash, string password, out bool rehashNeeded)
    {
        var result = Hasher.VerifyHashedPassword(null!, hash, password);
        rehashNeeded = result == PasswordVerificationResult.SuccessRehashNeeded;
        return result != PasswordVerificationResult.Failed;
    }
}
