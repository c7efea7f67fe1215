using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;

namespace TcStudio.ServiceDefaults;

/// <summary>
/// Sets <c>http.route</c> on the request's activity as soon as routing has chosen the endpoint. The OpenTelemetry
/// ASP.NET Core instrumentation only sets it when the request ends, but whatever runs during the request (the slow
/// query log, above all) wants to name the endpoint it runs for. It listens to routing's own diagnostic event, so it
/// works wherever routing sits in the pipeline, at the cost of one tag per routed request.
/// </summary>
public sealed class HttpRouteActivityTagger : IHostedService, IObserver<DiagnosticListener>, IObserver<KeyValuePair<string, object?>>
{
    public const string RouteTag = "http.route";
    public const string MethodTag = "http.request.method";
    private const string AspNetCoreListener = "Microsoft.AspNetCore";
    private const string EndpointMatched = "Microsoft.AspNetCore.Routing.EndpointMatched";

    private readonly List<IDisposable> _subscriptions = [];
    private IDisposable? _allListeners;

    /// <summary>
    /// Keeps a request activity in existence when tracing samples nothing (no exporter: ServiceDefaults): propagation
    /// data only, so it costs no instrumentation tags, yet carries the route for whatever runs during the request.
    /// </summary>
    private readonly ActivityListener _requestActivities = new()
    {
        ShouldListenTo = static source => source.Name == AspNetCoreListener,
        Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.PropagationData,
    };

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_subscriptions)
        {
            if (_allListeners is null) ActivitySource.AddActivityListener(_requestActivities);
            _allListeners ??= DiagnosticListener.AllListeners.Subscribe(this);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_subscriptions)
        {
            _allListeners?.Dispose();
            _allListeners = null;
            _requestActivities.Dispose();
            foreach (var subscription in _subscriptions) subscription.Dispose();
            _subscriptions.Clear();
        }
        return Task.CompletedTask;
    }

    void IObserver<DiagnosticListener>.OnNext(DiagnosticListener listener)
    {
        if (listener.Name != AspNetCoreListener) return;
        // Enabled for the routing event only: no other ASP.NET Core diagnostics are produced on our account.
        var subscription = listener.Subscribe(this, static (name, _, _) => name == EndpointMatched);
        lock (_subscriptions) _subscriptions.Add(subscription);
    }

    void IObserver<KeyValuePair<string, object?>>.OnNext(KeyValuePair<string, object?> diagnostic)
    {
        if (diagnostic.Key != EndpointMatched || diagnostic.Value is not HttpContext context) return;
        if (context.GetEndpoint() is RouteEndpoint { RoutePattern.RawText: { } route }
            && context.Features.Get<IHttpActivityFeature>()?.Activity is { } activity)
        {
            activity.SetTag(RouteTag, route);
            // The instrumentation sets the method only on activities it records (not when nothing is exported).
            if (activity.GetTagItem(MethodTag) is null) activity.SetTag(MethodTag, context.Request.Method);
        }
    }

    void IObserver<DiagnosticListener>.OnCompleted() { }
    void IObserver<DiagnosticListener>.OnError(Exception error) { }
    void IObserver<KeyValuePair<string, object?>>.OnCompleted() { }
    void IObserver<KeyValuePair<string, object?>>.OnError(Exception error) { }
}
