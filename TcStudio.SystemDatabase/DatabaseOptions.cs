using TcStudio.DatabaseTelemetry;

namespace TcStudio.SystemDatabase;

/// <summary>
/// The configuration section <c>Database</c>. Pool and timeout values are applied to the Npgsql connection string
/// builder in one place (<see cref="SystemDatabaseConnection"/>): a value set here wins; an unset one fills in only
/// where the connection string itself says nothing.
/// </summary>
public sealed class DatabaseOptions : DatabaseTelemetryOptions
{
    public const string SectionName = "Database";

    /// <summary>The keys that were numbers of seconds or milliseconds; still read, with a deprecation line at start.</summary>
    public static readonly IReadOnlyList<Configuration.RenamedKey> RenamedKeys =
    [
        Configuration.RenamedKey.FromSeconds(SectionName, "IdleLifetimeSeconds", nameof(IdleLifetime)),
        Configuration.RenamedKey.FromSeconds(SectionName, "ConnectTimeoutSeconds", nameof(ConnectTimeout)),
        Configuration.RenamedKey.FromSeconds(SectionName, "CommandTimeoutSeconds", nameof(CommandTimeout)),
        Configuration.RenamedKey.FromMilliseconds(SectionName, "SlowQueryThresholdMs", nameof(SlowQueryThreshold)),
    ];

    /// <summary><c>DB_TYPE</c> or <c>Database:Provider</c>; PostgreSQL is the only system-database provider.</summary>
    public string Provider { get; set; } = "postgres";

    public int MinPoolSize { get; set; } = 2;
    public int MaxPoolSize { get; set; } = 10;
    /// <summary>Idle connections above the minimum close after this (whole seconds; was <c>IdleLifetimeSeconds</c>).</summary>
    public TimeSpan IdleLifetime { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Opening a connection, and waiting for one from a full pool (whole seconds; was <c>ConnectTimeoutSeconds</c>).</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The client-side limit of a command (whole seconds; was <c>CommandTimeoutSeconds</c>).</summary>
    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Npgsql SslMode: Disable, Allow, Prefer, Require, VerifyCA, VerifyFull. Production: VerifyFull.</summary>
    public string SslMode { get; set; } = "Prefer";

    /// <summary>
    /// Retries of an operation that failed transiently (EF's retrying execution strategy, delays 0, 1, 3, 7 s … capped
    /// at <see cref="MaxRetryDelay"/>). Kept short so that while the database is down a request answers 503 within
    /// seconds instead of hanging for a minute (EF's defaults: 6 retries, 30 s cap, about 56 s in all).
    /// </summary>
    public int MaxRetryCount { get; set; } = 3;

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a statement of an API request waits for a lock before PostgreSQL gives up on it (<c>lock_timeout</c>,
    /// set per transaction, never per session). A request that hits it answers 503 with Retry-After and is not
    /// retried, so a table locked by someone else cannot make requests queue up and drain the connection pool.
    /// Zero turns it off.
    /// </summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest a statement of an API request may run (<c>statement_timeout</c>, set per transaction). Shorter than
    /// <see cref="CommandTimeout"/>, so the server stops the statement before the client gives up on the
    /// connection; a request that hits it answers 503 and is not retried. Zero turns it off. The worker (migrations,
    /// seeding, backups) is not bound by it.
    /// </summary>
    public TimeSpan RequestStatementTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How long the worker and the API wait for the database at start before giving up.</summary>
    public TimeSpan StartupTimeout { get; set; } = TimeSpan.FromSeconds(60);


    /// <summary>How long /health waits for the system database's round trip before calling it unhealthy.</summary>
    public TimeSpan HealthCheckTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How often the database size is sampled for growth figures (the API samples once at start too).</summary>
    public TimeSpan SizeSampleInterval { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Size samples older than this are deleted.</summary>
    public TimeSpan SizeSampleRetention { get; set; } = TimeSpan.FromDays(90);

    /// <summary>Queries running longer than this are listed as long-running by the insights API (unless it asks otherwise).</summary>
    public TimeSpan LongRunningQueryThreshold { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Lets the insights API run <c>CREATE EXTENSION IF NOT EXISTS pg_stat_statements</c> when the server preloads the
    /// library and the API's role is allowed to (a superuser, in practice: a least-privilege role never is, and the
    /// in-memory slow-query log is used instead). False keeps the API from attempting that one piece of DDL.
    /// </summary>
    public bool CreateStatStatementsExtension { get; set; } = true;

    /// <summary>Lets the API apply pending migrations itself at start, under the worker's lock. Off by default.</summary>
    public bool MigrateOnStartup { get; set; }
}
