using System.Diagnostics.Metrics;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Workspace connection metrics (SqlClient has no meter, and Npgsql's are per data source): meter
/// <c>TcStudio.WorkspaceDatabases</c>. Tagged with the provider only: workspace ids would be unbounded tag values.
/// </summary>
public sealed class WorkspaceDatabaseMetrics : IDisposable
{
    public const string MeterName = "TcStudio.WorkspaceDatabases";

    private readonly Meter _meter;
    private readonly Counter<long> _opened;
    private readonly Counter<long> _failures;
    private readonly Counter<long> _evictions;
    private readonly Histogram<double> _duration;
    private WorkspaceConnectionCache? _cache;

    public WorkspaceDatabaseMetrics(IMeterFactory meters)
    {
        _meter = meters.Create(MeterName);
        _opened = _meter.CreateCounter<long>("tcstudio.workspace.connections.opened", "{connection}",
            "Connections handed out to workspace databases.");
        _failures = _meter.CreateCounter<long>("tcstudio.workspace.connections.failures", "{failure}",
            "Failed attempts to reach a workspace database.");
        _evictions = _meter.CreateCounter<long>("tcstudio.workspace.connections.evictions", "{entry}",
            "Cached workspace entries removed (least recently used, idle, failing, deleted).");
        _duration = _meter.CreateHistogram<double>("tcstudio.workspace.operation.duration", "s",
            "Duration of operations on workspace databases (validate, deploy, execute, migrate...).");
        _meter.CreateObservableGauge("tcstudio.workspace.connections.cached",
            () => Measure(_cache?.CountByProvider()), "{entry}", "Workspace databases with a cached entry (and pools).");
        _meter.CreateObservableGauge("tcstudio.workspace.circuit.open",
            () => Measure(_cache?.OpenCircuitsByProvider()), "{circuit}", "Workspace databases whose circuit is open.");
    }

    internal void Observe(WorkspaceConnectionCache cache) => _cache = cache;

    public void Opened(string provider) => _opened.Add(1, Tag(provider));
    public void Failure(string provider) => _failures.Add(1, Tag(provider));
    public void Evicted(string provider) => _evictions.Add(1, Tag(provider));
    public void OperationDuration(string provider, TimeSpan elapsed) => _duration.Record(elapsed.TotalSeconds, Tag(provider));

    private static KeyValuePair<string, object?> Tag(string provider) => new("provider", provider);

    private static IEnumerable<Measurement<int>> Measure(IEnumerable<(string Provider, int Count)>? counts) =>
        (counts ?? []).Select(c => new Measurement<int>(c.Count, Tag(c.Provider)));

    public void Dispose() => _meter.Dispose();
}
