using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TcStudio.DatabaseTelemetry;

/// <summary>One Npgsql connection pool's figures, read from Npgsql's own metrics.</summary>
public sealed record ConnectionPoolFigures(
    string Name,
    long Idle,
    long Used,
    long Max,
    long PendingRequests,
    long Timeouts,
    long ConnectionsCreated,
    double? AverageCreateTimeMs);

/// <summary>A pool whose every connection is in use while requests wait for one.</summary>
public sealed record PoolExhaustion(string Name, long Waiting, long Max)
{
    /// <summary>The words every report of it uses (log, /health, problem details), so one search finds them all.</summary>
    public override string ToString() => $"connection pool exhausted: {Waiting} waiting (all {Max} connections in use)";
}

/// <summary>
/// Reads the pool figures Npgsql publishes on its meter <c>Npgsql</c> (connection counts by state, the maximum,
/// pending requests, timeouts, physical-connection create time) so the insights API can show them without an
/// OpenTelemetry backend. Observable instruments are polled on demand; the few push instruments it needs fire only
/// when the pool itself does something (a wait, a timeout, a physical open), never per command. It listens from
/// construction; it is a hosted service only so that the host constructs it at start and the counters count from
/// there. When a request gives up waiting for a connection (Npgsql's pool timeout), it logs "connection pool
/// exhausted: N waiting" (at most once per <see cref="ExhaustionLogInterval"/> per pool) and counts it on
/// <c>tcstudio.db.pool.exhausted</c>; <see cref="FindExhaustion"/> tells /health and the API's error mapping the same.
/// </summary>
public sealed partial class NpgsqlPoolMetrics : IHostedService, IDisposable
{
    public static readonly TimeSpan ExhaustionLogInterval = TimeSpan.FromSeconds(5);

    /// <summary>A pool timeout this recent still counts as "exhausted now" (the waiters may just have been served).</summary>
    public static readonly TimeSpan RecentExhaustion = TimeSpan.FromSeconds(5);

    public const string MeterName = "Npgsql";
    public const string PoolNameTag = "db.client.connection.pool.name";
    public const string StateTag = "db.client.connection.state";
    public const string ConnectionCount = "db.client.connection.count";
    public const string ConnectionMax = "db.client.connection.max";
    public const string PendingRequests = "db.client.connection.npgsql.pending_requests";
    public const string Timeouts = "db.client.connection.npgsql.timeouts";
    public const string CreateTime = "db.client.connection.npgsql.create_time";

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, PoolCounters> _pools = new(StringComparer.Ordinal);
    private readonly Lock _pollGate = new();
    private Dictionary<string, (long Idle, long Used, long Max)>? _polled;

    private readonly ILogger _logger;
    private readonly DatabaseMetrics? _metrics;
    private readonly TimeProvider _clock;

    public NpgsqlPoolMetrics(ILoggerFactory? loggers = null, DatabaseMetrics? metrics = null, TimeProvider? clock = null)
    {
        _logger = (ILogger?)loggers?.CreateLogger("TcStudio.Database.Pool") ?? NullLogger.Instance;
        _metrics = metrics;
        _clock = clock ?? TimeProvider.System;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MeterName
                && instrument.Name is ConnectionCount or ConnectionMax or PendingRequests or Timeouts or CreateTime)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => OnMeasurement(instrument, value, tags));
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => OnMeasurement(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            if (instrument.Name == CreateTime) Pool(tags).RecordCreate(value);
        });
        _listener.Start();
    }

    /// <summary>Every pool this process has, or only <paramref name="poolName"/> (a data source's name).</summary>
    public IReadOnlyList<ConnectionPoolFigures> Read(string? poolName = null)
    {
        Dictionary<string, (long Idle, long Used, long Max)> polled;
        lock (_pollGate)
        {
            _polled = new Dictionary<string, (long, long, long)>(StringComparer.Ordinal);
            _listener.RecordObservableInstruments();
            polled = _polled;
            _polled = null;
        }

        return polled.Keys.Union(_pools.Keys)
            .Where(name => poolName is null || name == poolName)
            .Order(StringComparer.Ordinal)
            .Select(name =>
            {
                polled.TryGetValue(name, out var counts);
                _pools.TryGetValue(name, out var counters);
                return new ConnectionPoolFigures(name, counts.Idle, counts.Used, counts.Max,
                    counters?.PendingRequests ?? 0, counters?.Timeouts ?? 0, counters?.Created ?? 0,
                    counters?.AverageCreateTimeMs);
            })
            .ToList();
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _listener.Dispose();

    private void OnMeasurement(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        switch (instrument.Name)
        {
            case PendingRequests:
                Interlocked.Add(ref Pool(tags).PendingRequests, value);
                break;
            case Timeouts:
                var pool = Pool(tags);
                Interlocked.Add(ref pool.Timeouts, value);
                OnPoolExhausted(Find(tags, PoolNameTag) ?? "", pool);
                break;
            case ConnectionCount or ConnectionMax when _polled is { } polled:
                // Only during Read (under its lock): observable instruments report then. Data sources that share
                // a name add up, as they share the name in every other view of these metrics too.
                var name = Find(tags, PoolNameTag) ?? "";
                polled.TryGetValue(name, out var counts);
                if (instrument.Name == ConnectionMax) counts.Max += value;
                else if (Find(tags, StateTag) == "idle") counts.Idle += value;
                else counts.Used += value;
                polled[name] = counts;
                break;
        }
    }

    /// <summary>
    /// The pool's exhaustion when every connection is in use and requests wait (or one gave up waiting within
    /// <see cref="RecentExhaustion"/>); null otherwise.
    /// </summary>
    public PoolExhaustion? FindExhaustion(string poolName)
    {
        if (!_pools.TryGetValue(poolName, out var counters)) return null;
        var figures = Read(poolName).FirstOrDefault();
        var max = figures?.Max ?? 0;
        var waiting = Math.Max(Interlocked.Read(ref counters.PendingRequests), 0);
        var full = max > 0 && figures!.Used >= max && waiting > 0;
        var lastTimeout = Interlocked.Read(ref counters.LastTimeoutTicks);
        var recent = lastTimeout > 0 && _clock.GetUtcNow().UtcTicks - lastTimeout < RecentExhaustion.Ticks;
        return full || recent ? new PoolExhaustion(poolName, waiting, max) : null;
    }

    private void OnPoolExhausted(string name, PoolCounters pool)
    {
        var now = _clock.GetUtcNow().UtcTicks;
        Interlocked.Exchange(ref pool.LastTimeoutTicks, now);
        _metrics?.PoolExhausted.Add(1, new KeyValuePair<string, object?>(DatabaseMetrics.PoolNameTag, name));
        long suppressed;
        lock (pool.LogGate)
        {
            pool.UnloggedExhaustions++;
            if (pool.LastLoggedTicks > 0 && now - pool.LastLoggedTicks < ExhaustionLogInterval.Ticks) return;
            pool.LastLoggedTicks = now;
            suppressed = pool.UnloggedExhaustions - 1;
            pool.UnloggedExhaustions = 0;
        }
        // Npgsql reports the timeout while the request that gave up still counts as waiting.
        LogPoolExhausted(_logger, name, Math.Max(Interlocked.Read(ref pool.PendingRequests), 1), suppressed);
    }

    [LoggerMessage(EventId = 4101, Level = LogLevel.Warning,
        Message = "Connection pool {Pool}: connection pool exhausted: {Waiting} waiting; a request gave up waiting for a connection ({Suppressed} "
            + "more since the last report)")]
    private static partial void LogPoolExhausted(ILogger logger, string pool, long waiting, long suppressed);

    private PoolCounters Pool(ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
        _pools.GetOrAdd(Find(tags, PoolNameTag) ?? "", static _ => new PoolCounters());

    private static string? Find(ReadOnlySpan<KeyValuePair<string, object?>> tags, string key)
    {
        foreach (var tag in tags)
        {
            if (tag.Key == key) return tag.Value as string;
        }
        return null;
    }

    private sealed class PoolCounters
    {
        public long PendingRequests;
        public long Timeouts;
        public long LastTimeoutTicks;
        public readonly Lock LogGate = new();
        public long LastLoggedTicks;
        public long UnloggedExhaustions;
        private readonly Lock _gate = new();
        private long _created;
        private double _totalCreateSeconds;

        public long Created { get { lock (_gate) return _created; } }

        public double? AverageCreateTimeMs
        {
            get { lock (_gate) return _created == 0 ? null : Math.Round(_totalCreateSeconds / _created * 1000, 2); }
        }

        public void RecordCreate(double seconds)
        {
            lock (_gate)
            {
                _created++;
                _totalCreateSeconds += seconds;
            }
        }
    }
}
