using System.Security.Cryptography;
using System.Text;

namespace TcStudio.SystemDatabase.Security;

/// <summary>
/// PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677, as pg_authid keeps it), computed here so the
/// password itself never travels in SQL text a server might log:
/// <c>SCRAM-SHA-256$&lt;iterations&gt;:&lt;salt&gt;$&lt;StoredKey&gt;:&lt;ServerKey&gt;</c>.
/// <c>CREATE/ALTER ROLE ... PASSWORD '&lt;verifier&gt;'</c> stores it as is. Passwords here are ASCII, so SASLprep
/// leaves them unchanged.
/// </summary>
public static class ScramVerifier
{
    public const int Iterations = 4096;

    public static string Compute(string password, byte[]? salt = null, int iterations = Iterations)
    {
        salt ??= RandomNumberGenerator.GetBytes(16);
        var salted = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, 32);
        var clientKey = HMACSHA256.HashData(salted, "Client Key"u8);
        var storedKey = SHA256.HashData(clientKey);
        var serverKey = HMACSHA256.HashData(salted, "Server Key"u8);
        return $"SCRAM-SHA-256${iterations}:{Convert.ToBase64String(salt)}${Convert.ToBase64String(storedKey)}:{Convert.ToBase64String(serverKey)}";
    }

    /// <summary>The shape the provisioning functions accept (checked again there).</summary>
    public static bool IsVerifier(string value) =>
        System.Text.RegularExpressions.Regex.IsMatch(value,
            @"^SCRAM-SHA-256\$[0-9]{4,7}:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$");
}
