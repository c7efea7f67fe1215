namespace TcStudio.DatabaseTelemetry;

/// <summary>
/// The telemetry settings of the <c>Database</c> section (the system database's <c>DatabaseOptions</c> extends them,
/// so both read the same keys): the slow-query threshold and how many slow queries are kept.
/// </summary>
public class DatabaseTelemetryOptions
{
    /// <summary>Commands slower than this are counted and logged as slow queries; 0 or less turns that off.</summary>
    public int SlowQueryThresholdMs { get; set; } = 200;

    /// <summary>How many recent slow queries are kept in memory for the insights API.</summary>
    public int SlowQueryLogCapacity { get; set; } = 200;
}
