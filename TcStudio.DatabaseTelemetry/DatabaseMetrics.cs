using System.Diagnostics.Metrics;

namespace TcStudio.DatabaseTelemetry;

/// <summary>
/// TC Studio's own database instruments, on the meter <c>TcStudio.Database</c> (Npgsql's meter <c>Npgsql</c> carries
/// the pool figures). The names are a contract: dashboards and alerts are built on them.
/// </summary>
public sealed class DatabaseMetrics
{
    public const string MeterName = "TcStudio.Database";

    public const string QueryDurationName = "tcstudio.db.query.duration";
    public const string SlowQueriesName = "tcstudio.db.slow_queries";
    public const string DatabaseSizeName = "tcstudio.db.size";
    public const string PoolExhaustedName = "tcstudio.db.pool.exhausted";

    /// <summary>select, insert, update, delete or other: the first keyword of the SQL, so the cardinality stays at five.</summary>
    public const string OperationKindTag = "db.operation.kind";
    public const string DatabaseNameTag = "db.namespace";
    public const string PoolNameTag = "db.client.connection.pool.name";

    private static readonly double[] QueryDurationBuckets =
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30];

    private volatile SizeReading? _lastSize;

    public DatabaseMetrics(IMeterFactory meterFactory)
    {
        Meter = meterFactory.Create(MeterName);
        QueryDuration = Meter.CreateHistogram(QueryDurationName, "s",
            "Duration of every PostgreSQL command issued through Npgsql (EF Core or raw), by operation kind.",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = QueryDurationBuckets });
        SlowQueries = Meter.CreateCounter<long>(SlowQueriesName, "{query}",
            "Commands that took longer than Database:SlowQueryThreshold, by operation kind.");
        PoolExhausted = Meter.CreateCounter<long>(PoolExhaustedName, "{request}",
            "Requests for a connection that waited the whole pool timeout because every pooled connection was in use, by pool.");
        Meter.CreateObservableGauge(DatabaseSizeName, ObserveDatabaseSize, "By",
            "Size of the system database (pg_database_size) at the last sample.");
    }

    public Meter Meter { get; }
    public Histogram<double> QueryDuration { get; }
    public Counter<long> SlowQueries { get; }
    public Counter<long> PoolExhausted { get; }

    /// <summary>Called by the size sampler after each successful sample.</summary>
    public void RecordDatabaseSize(string database, long bytes) => _lastSize = new SizeReading(database, bytes);

    private IEnumerable<Measurement<long>> ObserveDatabaseSize() =>
        _lastSize is { } size ? [new Measurement<long>(size.Bytes, new KeyValuePair<string, object?>(DatabaseNameTag, size.Database))] : [];

    private sealed record SizeReading(string Database, long Bytes);
}
