using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace TcStudio.SystemDatabase.Configuration;

/// <summary>
/// Turns an options failure at start into the one line a process prints before it exits with its configuration-error
/// code (2): the key and what is wrong, never the value (some are secrets).
/// </summary>
public static partial class OptionsErrors
{
    /// <summary>
    /// Runs every <c>ValidateOnStart</c> registration now (the host would only at StartAsync), so the start-up checks
    /// can stop with one line. Null when everything is valid.
    /// </summary>
    public static string? Validate(IServiceProvider services)
    {
        try
        {
            services.GetService<IStartupValidator>()?.Validate();
            return null;
        }
        catch (Exception e) when (Describe(e) is { } line)
        {
            return line;
        }
    }

    /// <summary>The one line for an options or binding failure; null for any other exception.</summary>
    public static string? Describe(Exception exception) => exception switch
    {
        AggregateException aggregate => aggregate.InnerExceptions.Select(Describe).FirstOrDefault(line => line is not null),
        OptionsValidationException validation => OneLine(validation.Failures.FirstOrDefault()
            ?? $"Options '{validation.OptionsName}' are not valid."),
        ConfigurationValueException value => value.Message,
        // The binder's message quotes the value ("Failed to convert configuration value '…' at 'Key' to type '…'"):
        // only the key and the type are kept.
        InvalidOperationException binding when BindingFailure().Matches(binding.Message) is { Count: > 0 } matches =>
            $"Configuration key '{matches[^1].Groups["key"].Value}' is not valid: {Expected(matches[^1].Groups["type"].Value)} is expected.",
        _ => null,
    };

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    private static string Expected(string type) => type switch
    {
        "System.TimeSpan" => "a duration (hh:mm:ss)",
        "System.Int32" or "System.Int64" => "a whole number",
        "System.Double" => "a number",
        "System.Boolean" => "true or false",
        _ => $"a value of type {type}",
    };

    [GeneratedRegex(@" at '(?<key>[^']+)' to type '(?<type>[^']+)'")]
    private static partial Regex BindingFailure();
}
