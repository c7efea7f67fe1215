using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The configuration section <c>Api:Https</c>: HTTPS redirection and HSTS, off by default (TLS is usually ended by a
/// reverse proxy in front; its X-Forwarded-Proto counts when it is a listed proxy, see <see cref="ClientAddress"/>).
/// </summary>
public sealed class HttpsOptions
{
    public const string SectionName = "Api:Https";

    /// <summary>Answer plain-HTTP requests with a redirect (307) to HTTPS.</summary>
    public bool Redirect { get; set; }

    /// <summary>Send Strict-Transport-Security (one year) on HTTPS responses (never for localhost).</summary>
    public bool Hsts { get; set; }

    /// <summary>The HTTPS port redirects point at; unset: the server's own HTTPS endpoint or the https_port setting.</summary>
    public int? Port { get; set; }

    public static HttpsOptions Read(IConfiguration configuration)
    {
        var options = new HttpsOptions();
        configuration.GetSection(SectionName).Bind(options);
        return options;
    }

    public static IEnumerable<string> FindConfigurationErrors(IConfiguration configuration)
    {
        HttpsOptions options;
        try
        {
            options = Read(configuration);
        }
        catch (InvalidOperationException e)
        {
            return [OptionsErrors.Describe(e) ?? $"Section '{SectionName}' holds a value that is not true/false or a port number."];
        }
        return options.FindError() is { } error ? [error] : [];
    }

    /// <summary>One line naming the unusable value, or null (the same check as the bound options' ValidateOnStart).</summary>
    public string? FindError() => Port is < 1 or > 65535 ? $"{SectionName}:Port must be a port number (1-65535)." : null;
}

public static class HttpsPolicy
{
    public static WebApplicationBuilder AddHttpsPolicy(this WebApplicationBuilder builder)
    {
        var https = HttpsOptions.Read(builder.Configuration);
        builder.Services.AddHttpsRedirection(options =>
        {
            if (https.Port is { } port) options.HttpsPort = port;
        });
        builder.Services.AddHsts(options => options.MaxAge = TimeSpan.FromDays(365));
        return builder;
    }

    public static WebApplication UseHttpsPolicy(this WebApplication app)
    {
        var https = HttpsOptions.Read(app.Configuration);
        if (https.Hsts) app.UseHsts();
        if (https.Redirect) app.UseHttpsRedirection();
        return app;
    }
}
