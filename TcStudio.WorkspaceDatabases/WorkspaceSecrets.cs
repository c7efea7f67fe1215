using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Encrypts the workspace roles' passwords for the system database (AES-256-GCM, a random nonce per value, the role
/// name as associated data so a value cannot be moved to another role) with the key <c>Workspaces:SecretKey</c>:
/// base64 of 32 random bytes (<c>openssl rand -base64 32</c>), the same for the API and the worker. Required outside
/// Development (a missing or malformed key stops the process with exit code 2 naming it). In Development without one,
/// a key is generated once into <c>.tcstudio/development-workspace-secret-key</c> in the repository root (the nearest
/// directory above the content root holding TcStudio.sln, so the API and the worker share it; git-ignored), or under
/// the content root when there is no repository. Losing the key loses the ability to connect to the workspace
/// databases until their roles are given new passwords (<c>workspaces migrate</c> does, from a fresh key).
/// </summary>
public sealed class WorkspaceSecrets(IConfiguration configuration, IHostEnvironment environment)
{
    public const string KeyName = "Workspaces:SecretKey";
    public const string DevelopmentKeyFile = ".tcstudio/development-workspace-secret-key";
    public const int KeyBytes = 32;

    private const byte FormatVersion = 1;
    private const int NonceBytes = 12;
    private const int TagBytes = 16;

    private readonly Lazy<byte[]> _key = new(() => ResolveKey(configuration, environment));

    /// <summary>One line naming the key when it is missing (outside Development) or malformed; null when usable.</summary>
    public static string? FindConfigurationError(IConfiguration configuration, IHostEnvironment environment)
    {
        var configured = configuration[KeyName];
        if (string.IsNullOrEmpty(configured))
        {
            return environment.IsDevelopment() ? null
                : $"{KeyName} is not set (environment variable Workspaces__SecretKey); it is required in the "
                    + $"{environment.EnvironmentName} environment "
                  + $"to keep the workspace roles' passwords. Example: base64 of {KeyBytes} random bytes (openssl rand -base64 {KeyBytes}).";
        }
        return Decode(configured) is null
            ? $"{KeyName} is malformed: it must be base64 of exactly {KeyBytes} bytes (openssl rand -base64 {KeyBytes})."
            : null;
    }

    public byte[] Protect(string secret, string purpose)
    {
        var plain = Encoding.UTF8.GetBytes(secret);
        var output = new byte[1 + NonceBytes + TagBytes + plain.Length];
        output[0] = FormatVersion;
        var nonce = output.AsSpan(1, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key.Value, TagBytes);
        aes.Encrypt(nonce, plain, output.AsSpan(1 + NonceBytes + TagBytes), output.AsSpan(1 + NonceBytes, TagBytes), Purpose(purpose));
        return output;
    }

    /// <exception cref="CryptographicException">The value was not made with this key for this purpose.</exception>
    public string Unprotect(byte[] protectedSecret, string purpose)
    {
        if (protectedSecret.Length < 1 + NonceBytes + TagBytes || protectedSecret[0] != FormatVersion)
        {
            throw new CryptographicException("Not a TC Studio protected value.");
        }
        var cipher = protectedSecret.AsSpan(1 + NonceBytes + TagBytes);
        var plain = new byte[cipher.Length];
        using var aes = new AesGcm(_key.Value, TagBytes);
        aes.Decrypt(protectedSecret.AsSpan(1, NonceBytes), cipher, protectedSecret.AsSpan(1 + NonceBytes, TagBytes), plain, Purpose(purpose));
        return Encoding.UTF8.GetString(plain);
    }

    /// <summary>A new random password: 32 bytes as URL-safe base64 (43 characters), nothing a connection string must escape.</summary>
    public static string NewPassword() =>
        Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static byte[] Purpose(string purpose) => Encoding.UTF8.GetBytes("tcstudio-workspace-secret:" + purpose);

    private static byte[] ResolveKey(IConfiguration configuration, IHostEnvironment environment)
    {
        var configured = configuration[KeyName];
        if (!string.IsNullOrEmpty(configured))
        {
            return Decode(configured) ?? throw new InvalidOperationException(FindConfigurationError(configuration, environment));
        }
        if (!environment.IsDevelopment()) throw new InvalidOperationException(FindConfigurationError(configuration, environment));
        return Decode(ReadOrCreateDevelopmentKey(DevelopmentKeyPath(environment.ContentRootPath)))
            ?? throw new InvalidOperationException($"The development key file {DevelopmentKeyFile} is malformed; delete it to get a new one.");
    }

    /// <summary>Where the Development key lives for a process whose content root is <paramref name="contentRoot"/>.</summary>
    public static string DevelopmentKeyPath(string contentRoot)
    {
        for (var directory = new DirectoryInfo(contentRoot); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "TcStudio.sln"))) return Path.Combine(directory.FullName, DevelopmentKeyFile);
        }
        return Path.Combine(contentRoot, DevelopmentKeyFile);
    }

    private static string ReadOrCreateDevelopmentKey(string path)
    {
        if (File.Exists(path)) return File.ReadAllText(path).Trim();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeyBytes));
        try
        {
            // CreateNew: when the API and the worker start together, the first one's key wins and the other reads it.
            using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
            using (var writer = new StreamWriter(stream))
            {
                writer.Write(key);
            }
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            return key;
        }
        catch (IOException) when (File.Exists(path))
        {
            Thread.Sleep(50);
            return File.ReadAllText(path).Trim();
        }
    }

    private static byte[]? Decode(string key)
    {
        try
        {
            var bytes = Convert.FromBase64String(key.Trim());
            return bytes.Length == KeyBytes ? bytes : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
