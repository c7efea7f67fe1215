using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Configuration;

namespace TcStudio.AppHost;

/// <summary>A configuration mistake: one line naming the key (never its value), exit code 2.</summary>
public sealed class AppHostConfigurationException(string message) : Exception(message);

/// <summary>How the AppHost's own settings (section <c>AppHost</c>) are read and checked.</summary>
public static class AppHostSettings
{
    public const string Section = "AppHost";
    public const int BadConfigurationExitCode = 2;

    /// <summary>An enum-like setting: one of <paramref name="allowed"/> (case-insensitive), or the first when unset.</summary>
    public static string ReadChoice(IConfiguration configuration, string key, params string[] allowed)
    {
        var value = configuration[key];
        if (string.IsNullOrWhiteSpace(value)) return allowed[0];
        return allowed.FirstOrDefault(a => string.Equals(a, value.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new AppHostConfigurationException($"'{key}' must be one of {string.Join(", ", allowed)}.");
    }

    public static int ReadPort(IConfiguration configuration, string key)
    {
        var value = configuration[key];
        if (string.IsNullOrWhiteSpace(value)) return 0;
        return int.TryParse(value, out var port) && port is >= 0 and <= 65535
            ? port
            : throw new AppHostConfigurationException($"'{key}' must be a port number from 0 to 65535 (0: a free port at each start).");
    }

    public static bool TryReadConnectionString(IConfiguration configuration, string name, [NotNullWhen(true)] out string? value)
    {
        value = configuration.GetConnectionString(name);
        return !string.IsNullOrWhiteSpace(value);
    }
}
