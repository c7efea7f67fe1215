using System.Diagnostics.Metrics;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 4: 1,000 concurrent clients against the API with the default pool (Database:MaxPoolSize 10), then 50.
/// Zero errors and zero pool timeouts expected; p99 reported. Pool timeouts are read from Npgsql's own metric
/// (db.client.connection.npgsql.timeouts) in this process, where the API runs. Baseline: raw Npgsql with the same
/// pool size and 1,000 concurrent callers issuing the same statements.
/// </summary>
public sealed class PoolSaturationScenario : IScenario
{
    public int Number => 4;
    public string Title => "Pool saturation";
    public string Measures =>
        "errors, pool timeouts, requests/s and p99 with many concurrent clients against a small connection pool, against raw Npgsql "
        + "with the same pool and the same number of concurrent callers";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        await context.SystemAsync();
        var users = await DataGenerator.ReadSeededUsersAsync(context.SystemConnectionString);
        var clients = options.SaturationClients;
        var slug = BenchContext.ReadWorkspace;
        var request = new RequestSpec("workspace", "GET", $"/api/workspaces/{slug}");
        var rows = new List<ResultRow>();
        var workload = new List<string>
        {
            $"{clients:#,0} clients, each on its own keep-alive connection (opened before the clock starts), 100% {request}, caller 'user'",
            "pool timeouts: Npgsql's db.client.connection.npgsql.timeouts for the API's data source (pool 'tcstudio') and the baseline's; "
            + "Database:ConnectTimeout (2 s, the product default) bounds the wait for a pooled connection",
        };

        foreach (var poolSize in options.SaturationPoolSizes)
        {
            var settings = new Dictionary<string, string?> { ["Database:MaxPoolSize"] = poolSize.ToString() };
            var api = await context.ApiAsync(poolSize == 10 ? null : settings);
            var token = await context.UserTokenAsync();
            await using var dataSource = context.RawDataSource(context.SystemConnectionString, settings);
            var raw = new RawQueries(dataSource);

            using var pool = new PoolMetrics();
            BenchContext.Log($"  {clients} clients, max pool {poolSize}");
            var comparison = await HttpMeasure.CompareAsync(context,
                _ => new LoadCommand
                {
                    BaseUrl = api.BaseUrl, BearerToken = token, Clients = clients, WarmupMs = 0, DurationMs = 0, Requests = [request],
                    ConnectParallelism = 100,
                },
                clients, (_, _) => raw.GetWorkspaceAsync(slug, users.UserId),
                // A thousand clients need a window longer than one round of the queue, whatever --duration says.
                Max(options.Duration, TimeSpan.FromSeconds(1)), Max(options.Warmup, TimeSpan.FromSeconds(0.5)));

            var productTimeouts = pool.Timeouts("tcstudio");
            var baselineTimeouts = pool.Timeouts("bench-raw");
            var row = HttpMeasure.Row(Number, $"{clients:#,0} clients, max pool {poolSize}{(poolSize == 10 ? " (default)" : "")}",
                comparison, "raw Npgsql", "0 errors, 0 pool timeouts; p99 reported",
                (_, _, _) => comparison.Product.Sum(r => r.ErrorCount) == 0 && productTimeouts == 0,
                note: $"pool timeouts: product {productTimeouts}, baseline {baselineTimeouts}; most requests waiting for a pooled connection "
                    + $"at once: product {pool.MaxPending("tcstudio")}, baseline {pool.MaxPending("bench-raw")}; "
                    + $"baseline errors {comparison.Baseline.Sum(r => r.ErrorCount)}");
            var errors = new Dictionary<string, long>(row.Errors ?? new Dictionary<string, long>());
            if (productTimeouts > 0) errors["pool timeouts"] = productTimeouts;
            rows.Add(row with { Errors = errors });
        }
        await context.ApiAsync(); // back to the product's defaults for whatever runs next
        return new ScenarioOutcome(rows, workload);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>Npgsql's pool metrics per pool name, read with a MeterListener while it lives.</summary>
    private sealed class PoolMetrics : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Dictionary<string, long> _timeouts = [];
        private readonly Dictionary<string, long> _pending = [];
        private readonly Dictionary<string, long> _maxPending = [];

        public PoolMetrics()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "Npgsql"
                    && instrument.Name is "db.client.connection.npgsql.timeouts" or "db.client.connection.npgsql.pending_requests")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>(OnMeasurement);
            _listener.SetMeasurementEventCallback<int>((instrument, value, tags, state) => OnMeasurement(instrument, value, tags, state));
            _listener.Start();
        }

        private void OnMeasurement(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
        {
            var pool = "";
            foreach (var tag in tags)
            {
                if (tag.Key == "db.client.connection.pool.name") pool = tag.Value as string ?? "";
            }
            lock (_timeouts)
            {
                if (instrument.Name.EndsWith("timeouts", StringComparison.Ordinal))
                {
                    _timeouts[pool] = _timeouts.GetValueOrDefault(pool) + value;
                }
                else
                {
                    var pending = _pending[pool] = _pending.GetValueOrDefault(pool) + value;
                    if (pending > _maxPending.GetValueOrDefault(pool)) _maxPending[pool] = pending;
                }
            }
        }

        public long Timeouts(string pool)
        {
            lock (_timeouts) return _timeouts.GetValueOrDefault(pool);
        }

        public long MaxPending(string pool)
        {
            lock (_timeouts) return _maxPending.GetValueOrDefault(pool);
        }

        public void Dispose() => _listener.Dispose();
    }
}
