using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TcStudio.SystemDatabase.Configuration;

/// <summary>
/// A documented key that was renamed (a number of seconds or milliseconds that became a TimeSpan). The old key is
/// still read when the new one is unset, and the process logs one deprecation line naming the successor at start.
/// Registered as a singleton per key, so each process warns about exactly the keys its options read.
/// </summary>
public sealed record RenamedKey(string Section, string OldName, string NewName, double SecondsPerUnit)
{
    public string OldKey => $"{Section}:{OldName}";
    public string NewKey => $"{Section}:{NewName}";

    public static RenamedKey FromSeconds(string section, string oldName, string newName) => new(section, oldName, newName, 1);

    public static RenamedKey FromMilliseconds(string section, string oldName, string newName) => new(section, oldName, newName, 0.001);

    /// <summary>The deprecation line, or null when the old key is not set. Never the value.</summary>
    public string? FindDeprecation(IConfiguration configuration) =>
        configuration[OldKey] is null ? null
        : configuration[NewKey] is null
            ? $"Configuration key '{OldKey}' is deprecated; use '{NewKey}' (hh:mm:ss) instead."
            : $"Configuration key '{OldKey}' is deprecated and ignored: '{NewKey}' is set; remove '{OldKey}'.";

    /// <summary>
    /// Sets the new property of <paramref name="options"/> (found by name; skipped when the type has none) from the
    /// old key when only the old key is set. A value that is not a number is <see cref="ConfigurationValueException"/>.
    /// </summary>
    public void Apply(object options, IConfiguration configuration)
    {
        if (configuration[OldKey] is not { } text || configuration[NewKey] is not null) return;
        var property = options.GetType().GetProperty(NewName);
        if (property is null || property.PropertyType != typeof(TimeSpan)) return;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number)
            || double.IsNaN(number) || double.IsInfinity(number) || Math.Abs(number * SecondsPerUnit) > TimeSpan.MaxValue.TotalSeconds)
        {
            throw new ConfigurationValueException(OldKey, SecondsPerUnit == 1 ? "a number of seconds" : "a number of milliseconds");
        }
        property.SetValue(options, TimeSpan.FromSeconds(number * SecondsPerUnit));
    }

    public static void ApplyAll(object options, IConfiguration configuration, IEnumerable<RenamedKey> keys)
    {
        foreach (var key in keys) key.Apply(options, configuration);
    }
}

/// <summary>A configuration value that cannot be used; the message names the key and what is expected, never the value.</summary>
public sealed class ConfigurationValueException(string key, string expected)
    : InvalidOperationException($"Configuration key '{key}' is not valid: {expected} is expected.")
{
    public string Key { get; } = key;
}

public static class RenamedKeys
{
    /// <summary>One warning per renamed key still in use (each options class registers its <see cref="RenamedKey"/>s).</summary>
    public static void LogDeprecations(IServiceProvider services, ILogger logger)
    {
        var configuration = services.GetRequiredService<IConfiguration>();
        var keys = services.GetServices<RenamedKey>();
        foreach (var line in keys.Distinct().Select(key => key.FindDeprecation(configuration)).OfType<string>())
        {
            logger.LogWarning("{Deprecation}", line);
        }
    }
}
