using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;

namespace TcStudio.ServiceDefaults;

/// <summary>
/// The Prometheus scrape endpoint, <c>/metrics</c>, on a listener of its own (<c>Telemetry:Prometheus:Url</c>, by default
/// http://127.0.0.1:9464), never on the service's public port: metrics describe the service's insides and need no
/// sign-in, so they are for the monitoring network only. A small Kestrel server that serves nothing else; it starts
/// with the host in a service that called <c>MapDefaultEndpoints()</c> (the API) and not in the worker. If it cannot
/// listen, it says so in the log and the service runs on without it.
/// </summary>
public sealed partial class PrometheusScrapeListener(IServiceProvider services, IConfiguration configuration,
    ILogger<PrometheusScrapeListener> logger) : IHostedService, IAsyncDisposable
{
    public const string DefaultUrl = "http://127.0.0.1:9464";

    private WebApplication? _server;
    private volatile bool _serve;

    /// <summary>The address it listens on (a port of 0 in the setting is resolved), once started.</summary>
    public Uri? Address { get; private set; }

    /// <summary>Called by MapDefaultEndpoints: this process serves HTTP, so it serves its metrics too.</summary>
    internal void Serve() => _serve = true;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!_serve) return;
        var url = configuration[ServiceDefaultsExtensions.PrometheusUrlKey] is { Length: > 0 } configured ? configured : DefaultUrl;

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().UseUrls(url);
        // Started and stopped by the service's host, not by console signals of its own.
        builder.Services.AddSingleton<IHostLifetime, ControlledByParent>();
        var server = builder.Build();
        server.UseOpenTelemetryPrometheusScrapingEndpoint(services.GetRequiredService<MeterProvider>(),
            predicate: null!, path: ServiceDefaultsExtensions.PrometheusEndpointPath, configureBranchedPipeline: null!, optionsName: null!);
        server.Run(context =>
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        });

        try
        {
            await server.StartAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            LogCannotListen(logger, url, e.Message, ServiceDefaultsExtensions.PrometheusUrlKey);
            await server.DisposeAsync();
            return;
        }
        _server = server;
        Address = new Uri(server.Urls.First());
        LogListening(logger, new Uri(Address, ServiceDefaultsExtensions.PrometheusEndpointPath));
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null) await _server.StopAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }

    private sealed class ControlledByParent : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Prometheus scrape endpoint: {Url}")]
    private static partial void LogListening(ILogger logger, Uri url);

    [LoggerMessage(Level = LogLevel.Error,
        Message = "The Prometheus scrape endpoint cannot listen on {Url} ({Reason}); /metrics is not served. Set {Key} to a free address.")]
    private static partial void LogCannotListen(ILogger logger, string url, string reason, string key);
}
