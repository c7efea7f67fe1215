using System.Security.Cryptography;
using System.Text;
using Microsoft.IdentityModel.Tokens;

namespace TcStudio.Api.Auth;

/// <summary>
/// The token signing key: <c>Auth:SigningKey</c>, required outside Development. In Development without one, a random
/// key is generated once into a git-ignored file (.tcstudio/development-signing-key under the content root) so tokens
/// survive restarts.
/// </summary>
public static class SigningKeys
{
    public const int MinimumBytes = 32;
    public const string DevelopmentKeyFile = ".tcstudio/development-signing-key";

    public static string? FindConfigurationError(IConfiguration configuration, IHostEnvironment environment)
    {
        var configured = configuration[$"{AuthOptions.SectionName}:SigningKey"];
        if (string.IsNullOrEmpty(configured))
        {
            return environment.IsDevelopment()
                ? null
                : $"Auth:SigningKey is not set (environment variable Auth__SigningKey); it is required in the {environment.EnvironmentName} "
                  + $"environment. Example: a random base64 value of {MinimumBytes} bytes or more (openssl rand -base64 48).";
        }
        return Decode(configured).Length < MinimumBytes
            ? $"Auth:SigningKey is too short: it must hold at least {MinimumBytes} bytes (base64) or characters."
            : null;
    }

    public static SymmetricSecurityKey Resolve(IConfiguration configuration, IHostEnvironment environment)
    {
        var configured = configuration[$"{AuthOptions.SectionName}:SigningKey"];
        if (!string.IsNullOrEmpty(configured)) return new SymmetricSecurityKey(Decode(configured));
        if (!environment.IsDevelopment())
        {
            throw new InvalidOperationException(FindConfigurationError(configuration, environment));
        }
        return new SymmetricSecurityKey(Decode(ReadOrCreateDevelopmentKey(environment.ContentRootPath)));
    }

    private static string ReadOrCreateDevelopmentKey(string contentRoot)
    {
        var path = Path.Combine(contentRoot, DevelopmentKeyFile);
        if (File.Exists(path)) return File.ReadAllText(path).Trim();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));
        File.WriteAllText(path, key);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return key;
    }

    private static byte[] Decode(string key)
    {
        try
        {
            var bytes = Convert.FromBase64String(key);
            if (bytes.Length >= MinimumBytes) return bytes;
        }
        catch (FormatException)
        {
            // Not base64: a passphrase.
        }
        return Encoding.UTF8.GetBytes(key);
    }
}
