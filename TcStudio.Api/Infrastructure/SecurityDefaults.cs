using TcStudio.Api.Auth;
using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The API's edge: who the client is (<see cref="ClientAddress"/>, trusting forwarded headers only from listed
/// proxies), the general rate limit (<see cref="RequestRateLimits"/>) and HTTPS redirection and HSTS
/// (<see cref="HttpsPolicy"/>). Program.cs places their middleware.
/// </summary>
public static class SecurityDefaults
{
    public static WebApplicationBuilder AddSecurityDefaults(this WebApplicationBuilder builder)
    {
        // Bound and validated at start with the other options (the static readers below share the same checks: they run
        // while the builder is still being configured, to decide which middleware there is).
        builder.Services.AddOptions<RateLimitOptions>().BindConfiguration(RateLimitOptions.SectionName)
            .ValidateWith(options => options.FindError()).ValidateOnStart();
        builder.Services.AddOptions<HttpsOptions>().BindConfiguration(HttpsOptions.SectionName)
            .ValidateWith(options => options.FindError()).ValidateOnStart();
        // A mistake here is reported by the start-up checks (one line, exit code 2) right after the build.
        if (FindConfigurationErrors(builder.Configuration).Any()) return builder;
        return builder.AddClientAddress().AddRequestRateLimits().AddHttpsPolicy();
    }

    /// <summary>One line per unusable setting of these sections (checked at start: exit code 2).</summary>
    public static IEnumerable<string> FindConfigurationErrors(IConfiguration configuration)
    {
        foreach (var error in ClientAddress.FindConfigurationErrors(configuration)) yield return error;
        foreach (var error in RateLimitOptions.FindConfigurationErrors(configuration)) yield return error;
        foreach (var error in HttpsOptions.FindConfigurationErrors(configuration)) yield return error;
        if (configuration[ApiReference.EnabledKey] is { Length: > 0 } openApi && !bool.TryParse(openApi, out _))
        {
            yield return $"{ApiReference.EnabledKey} must be true or false.";
        }
        var login = new AuthOptions();
        string? loginError;
        try
        {
            configuration.GetSection(AuthOptions.SectionName).Bind(login);
            loginError = login.LoginRateLimit.FindError();
        }
        catch (InvalidOperationException e)
        {
            loginError = OptionsErrors.Describe(e) ?? "Section 'Auth:LoginRateLimit' holds a value that is not a number or a duration (hh:mm:ss).";
        }
        if (loginError is not null) yield return loginError;
        if (ServiceDefaultsExtensions.FindPrometheusConfigurationError(configuration) is { } prometheus) yield return prometheus;
    }
}
