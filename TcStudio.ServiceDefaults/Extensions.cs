using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using TcStudio.ServiceDefaults;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// What every TC Studio service gets, following the Aspire service-defaults template: OpenTelemetry (logs, traces,
/// metrics; OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; a Prometheus scrape endpoint on a listener of its own when
/// Telemetry:Prometheus:Enabled is true), health checks, service discovery and resilience.
/// </summary>
public static class ServiceDefaultsExtensions
{
    public const string HealthEndpointPath = "/health";
    public const string AlivenessEndpointPath = "/alive";
    public const string PrometheusEndpointPath = "/metrics";
    public const string LiveTag = "live";

    /// <summary>Turns the Prometheus scrape endpoint on or off (default: on in Development only).</summary>
    public const string PrometheusEnabledKey = "Telemetry:Prometheus:Enabled";

    /// <summary>Where the scrape endpoint listens (<see cref="PrometheusScrapeListener"/>); never the public port.</summary>
    public const string PrometheusUrlKey = "Telemetry:Prometheus:Url";

    /// <summary>The first switch, a bare true/false; still honoured, with a warning naming <see cref="PrometheusEnabledKey"/>.</summary>
    public const string PrometheusSettingKey = "Telemetry:Prometheus";

    /// <summary>Whether /health and /alive list each check (status, description, duration); default: Development only.</summary>
    public const string HealthDetailsKey = "Health:Details";

    public static TBuilder AddServiceDefaults<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.ConfigureOpenTelemetry();
        builder.AddDefaultHealthChecks();

        builder.Services.AddServiceDiscovery();
        builder.Services.ConfigureHttpClientDefaults(http =>
        {
            http.AddStandardResilienceHandler();
            http.AddServiceDiscovery();
        });
        return builder;
    }

    public static TBuilder ConfigureOpenTelemetry<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.Logging.AddOpenTelemetry(logging =>
        {
            logging.IncludeFormattedMessage = true;
            logging.IncludeScopes = true;
        });

        var prometheus = IsPrometheusEnabled(builder.Configuration, builder.Environment);
        var otlp = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var sqlClient = AspireSqlClientSettings.Read(builder.Configuration);
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(ServiceName(builder.Configuration, builder.Environment),
                // The AppHost names each replica (service.instance.id in OTEL_RESOURCE_ATTRIBUTES) and the dashboard
                // attributes telemetry by it: a generated id would show the service as an unknown resource.
                autoGenerateServiceInstanceId: !HasServiceInstanceId(builder.Configuration)))
            .WithMetrics(metrics =>
            {
                metrics
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddRuntimeInstrumentation();
                if (sqlClient.Metrics) metrics.AddSqlClientInstrumentation();
                if (prometheus) metrics.AddPrometheusExporter();
            })
            .WithTracing(tracing =>
            {
                tracing
                    .AddSource(builder.Environment.ApplicationName)
                    .AddAspNetCoreInstrumentation(aspnet =>
                        // Health probes and scrapes would drown the traces that matter.
                        aspnet.Filter = context => !IsInfrastructureRequest(context.Request.Path))
                    .AddHttpClientInstrumentation();
                if (sqlClient.Tracing) tracing.AddSqlClientInstrumentation();
                // With no exporter nothing would ever read a recorded span: requests still get an activity (for trace
                // context, and for the slow-query log to name the route), but not the instrumentation's tags and
                // processing. Measured in docs/performance.md; OTEL_TRACES_SAMPLER still overrides this.
                if (!otlp && string.IsNullOrWhiteSpace(builder.Configuration["OTEL_TRACES_SAMPLER"]))
                {
                    tracing.SetSampler(new AlwaysOffSampler());
                }
            });

        if (prometheus) builder.Services.AddPrometheusScrapeListener();

        if (otlp)
        {
            // Endpoint, protocol and headers come from the standard OTEL_EXPORTER_OTLP_* settings.
            builder.Services.AddOpenTelemetry().UseOtlpExporter();
        }

        // Lets the database layer say which endpoint issued a slow query while the request is still running
        // (the ASP.NET Core instrumentation only tags the route when the request ends).
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, HttpRouteActivityTagger>());
        return builder;
    }

    public static TBuilder AddDefaultHealthChecks<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.Services.AddHealthChecks().AddCheck("self", () => HealthCheckResult.Healthy(), [LiveTag]);
        return builder;
    }

    /// <summary>
    /// /health runs every check and answers 503 when one fails; /alive only those tagged live. Both answer with a small
    /// JSON report: the overall status, and each check only where <see cref="HealthDetailsKey"/> allows (Development by
    /// default: the endpoints need no sign-in); a failing check's details always go to the log. The Prometheus scrape
    /// endpoint, when enabled, is served on a listener of its own (<see cref="PrometheusScrapeListener"/>), never here.
    /// </summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        var details = ReadSwitch(app.Configuration, HealthDetailsKey) ?? app.Environment.IsDevelopment();
        Func<HttpContext, HealthReport, Task> writer = details ? HealthReportWriter.WriteAsync : HealthReportWriter.WriteStatusAsync;
        app.MapHealthChecks(HealthEndpointPath, new HealthCheckOptions { ResponseWriter = writer });
        app.MapHealthChecks(AlivenessEndpointPath, new HealthCheckOptions
        {
            Predicate = r => r.Tags.Contains(LiveTag),
            ResponseWriter = writer,
        });
        if (app.Configuration[PrometheusSettingKey] is { Length: > 0 })
        {
            app.Logger.LogWarning("{OldKey} is deprecated: use {NewKey} (and {UrlKey} for where /metrics listens; default {Url}).",
                PrometheusSettingKey, PrometheusEnabledKey, PrometheusUrlKey, PrometheusScrapeListener.DefaultUrl);
        }
        if (IsPrometheusEnabled(app.Configuration, app.Environment))
        {
            app.Services.GetRequiredService<PrometheusScrapeListener>().Serve();
        }
        return app;
    }

    /// <summary>True when OTEL_RESOURCE_ATTRIBUTES already names this instance (as an Aspire AppHost does).</summary>
    public static bool HasServiceInstanceId(IConfiguration configuration) =>
        (configuration["OTEL_RESOURCE_ATTRIBUTES"] ?? "").Split(',')
            .Any(attribute => attribute.Trim().StartsWith("service.instance.id=", StringComparison.Ordinal));

    /// <summary>OTEL_SERVICE_NAME when set, else the application (assembly) name.</summary>
    public static string ServiceName(IConfiguration configuration, IHostEnvironment environment) =>
        configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : environment.ApplicationName;

    public static bool IsPrometheusEnabled(IConfiguration configuration, IHostEnvironment environment) =>
        ReadSwitch(configuration, PrometheusEnabledKey) ?? ReadSwitch(configuration, PrometheusSettingKey) ?? environment.IsDevelopment();

    /// <summary>true/false, or null when unset or unreadable (the API's start-up checks name an unreadable one).</summary>
    private static bool? ReadSwitch(IConfiguration configuration, string key) =>
        bool.TryParse(configuration[key], out var value) ? value : null;

    /// <summary>One line naming the Prometheus setting that cannot be used, or null.</summary>
    public static string? FindPrometheusConfigurationError(IConfiguration configuration)
    {
        foreach (var key in new[] { PrometheusEnabledKey, PrometheusSettingKey, HealthDetailsKey })
        {
            if (configuration[key] is { Length: > 0 } value && !bool.TryParse(value, out _)) return $"{key} must be true or false.";
        }
        if (configuration[PrometheusUrlKey] is { Length: > 0 } url
            && !(Uri.TryCreate(url.Replace("*", "localhost").Replace("+", "localhost"), UriKind.Absolute, out var uri)
                && uri.Scheme == Uri.UriSchemeHttp))
        {
            return $"{PrometheusUrlKey} must be an http:// address to listen on (example: {PrometheusScrapeListener.DefaultUrl}).";
        }
        return null;
    }

    private static IServiceCollection AddPrometheusScrapeListener(this IServiceCollection services)
    {
        services.TryAddSingleton<PrometheusScrapeListener>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, PrometheusScrapeListener>(
            sp => sp.GetRequiredService<PrometheusScrapeListener>()));
        return services;
    }

    /// <summary>Probe and scrape requests: kept out of traces.</summary>
    public static bool IsInfrastructureRequest(PathString path) =>
        path.StartsWithSegments(HealthEndpointPath)
        || path.StartsWithSegments(AlivenessEndpointPath)
        || path.StartsWithSegments(PrometheusEndpointPath);
}
