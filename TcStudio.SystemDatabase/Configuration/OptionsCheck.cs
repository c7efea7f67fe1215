using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace TcStudio.SystemDatabase.Configuration;

/// <summary>
/// Validation by a function that names the first bad key in one line (or returns null), shared by the host's options
/// and by any static reader that runs before the host is built, so both say the same thing.
/// </summary>
public sealed class OptionsCheck<TOptions>(string? name, Func<TOptions, string?> findError) : IValidateOptions<TOptions>
    where TOptions : class
{
    public ValidateOptionsResult Validate(string? optionsName, TOptions options) =>
        name is not null && name != optionsName ? ValidateOptionsResult.Skip
        : findError(options) is { } error ? ValidateOptionsResult.Fail(error)
        : ValidateOptionsResult.Success;
}

public static class OptionsCheckExtensions
{
    /// <summary>Validates with <paramref name="findError"/> (one line naming the key, or null).</summary>
    public static OptionsBuilder<TOptions> ValidateWith<TOptions>(this OptionsBuilder<TOptions> builder, Func<TOptions, string?> findError)
        where TOptions : class
    {
        builder.Services.AddSingleton<IValidateOptions<TOptions>>(new OptionsCheck<TOptions>(builder.Name, findError));
        return builder;
    }

    /// <summary>Throws what the host's validation would (OptionsValidationException) when <paramref name="findError"/> finds one.</summary>
    public static TOptions Checked<TOptions>(this TOptions options, Func<TOptions, string?> findError) where TOptions : class =>
        findError(options) is { } error
            ? throw new OptionsValidationException(Options.DefaultName, typeof(TOptions), [error])
            : options;
}
