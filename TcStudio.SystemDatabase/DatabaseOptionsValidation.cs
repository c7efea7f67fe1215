namespace TcStudio.SystemDatabase;

/// <summary>
/// Checks <see cref="DatabaseOptions"/> at start (ValidateOnStart) and in <see cref="SystemDatabaseConnection.ReadOptions"/>,
/// naming the first bad key in one line and never its value.
/// </summary>
public static class DatabaseOptionsValidation
{
    private const string Section = DatabaseOptions.SectionName;

    // Npgsql's own bounds: Timeout 0–1024 s; a pool of 0 connections serves nothing.
    private static readonly TimeSpan MaxConnectTimeout = TimeSpan.FromSeconds(1024);

    public static string? FindError(DatabaseOptions options) =>
        options.MinPoolSize < 0 ? $"{Section}:MinPoolSize must be 0 or more."
        : options.MaxPoolSize < 1 ? $"{Section}:MaxPoolSize must be 1 or more."
        : options.IdleLifetime < TimeSpan.FromSeconds(1) ? $"{Section}:IdleLifetime must be at least 00:00:01."
        : options.ConnectTimeout < TimeSpan.Zero || options.ConnectTimeout > MaxConnectTimeout
            ? $"{Section}:ConnectTimeout must be from 00:00:00 (no limit) to 00:17:04."
        : options.CommandTimeout < TimeSpan.Zero ? $"{Section}:CommandTimeout must not be negative (00:00:00: no limit)."
        : !Enum.TryParse<Npgsql.SslMode>(options.SslMode, ignoreCase: true, out _)
            ? $"{Section}:SslMode must be one of {string.Join(", ", Enum.GetNames<Npgsql.SslMode>())}."
        : options.MaxRetryCount < 0 ? $"{Section}:MaxRetryCount must be 0 or more."
        : options.MaxRetryDelay < TimeSpan.Zero ? $"{Section}:MaxRetryDelay must not be negative."
        : options.LockTimeout < TimeSpan.Zero ? $"{Section}:LockTimeout must not be negative (hh:mm:ss; 0 turns it off)."
        : options.RequestStatementTimeout < TimeSpan.Zero
            ? $"{Section}:RequestStatementTimeout must not be negative (hh:mm:ss; 0 turns it off)."
        : options.StartupTimeout < TimeSpan.Zero ? $"{Section}:StartupTimeout must not be negative."
        : options.HealthCheckTimeout <= TimeSpan.Zero ? $"{Section}:HealthCheckTimeout must be positive."
        : options.SizeSampleInterval <= TimeSpan.Zero ? $"{Section}:SizeSampleInterval must be positive."
        : options.SizeSampleRetention <= TimeSpan.Zero ? $"{Section}:SizeSampleRetention must be positive."
        : options.LongRunningQueryThreshold < TimeSpan.Zero ? $"{Section}:LongRunningQueryThreshold must not be negative."
        : options.SlowQueryThreshold < TimeSpan.Zero ? $"{Section}:SlowQueryThreshold must not be negative (0 turns it off)."
        : options.SlowQueryLogCapacity < 0 ? $"{Section}:SlowQueryLogCapacity must be 0 or more."
        : null;
}
