namespace TcStudio.DatabaseTelemetry;

/// <summary>
/// The telemetry settings of the <c>Database</c> section (the system database's <c>DatabaseOptions</c> extends them,
/// so both read the same keys): the slow-query threshold and how many slow queries are kept.
/// </summary>
public class DatabaseTelemetryOptions
{
    /// <summary>
    /// Commands slower than this are counted and logged as slow queries; zero turns that off (key
    /// <c>Database:SlowQueryThreshold</c>, "00:00:00.200"; was <c>SlowQueryThresholdMs</c>).
    /// </summary>
    public TimeSpan SlowQueryThreshold { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How many recent slow queries are kept in memory for the insights API.</summary>
    public int SlowQueryLogCapacity { get; set; } = 200;
}
