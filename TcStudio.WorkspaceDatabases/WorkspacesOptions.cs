namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// The configuration section <c>Workspaces</c>: how workspace databases are connected to, cached, guarded and
/// executed against. Every value has a default that suits a small team; tests shrink the intervals.
/// </summary>
public sealed class WorkspacesOptions
{
    public const string SectionName = "Workspaces";

    /// <summary>At most this many (workspace, environment) entries stay cached; the least recently used goes first.</summary>
    public int MaxCachedConnections { get; set; } = 100;

    /// <summary>Each workspace's own pool (per credential) holds at most this many connections.</summary>
    public int MaxPoolSize { get; set; } = 10;

    /// <summary>Short on purpose: a dead server must fail fast, not hold requests.</summary>
    public int ConnectTimeoutSeconds { get; set; } = 3;

    /// <summary>An entry unused for longer than this is pinged before it is used again.</summary>
    public int IdleHealthCheckSeconds { get; set; } = 30;

    /// <summary>An entry unused for longer than this is removed by the periodic cleanup (its pools cleared).</summary>
    public int IdleEvictionSeconds { get; set; } = 600;

    public int CleanupIntervalSeconds { get; set; } = 60;

    /// <summary>Retries of one connection attempt (exponential backoff with jitter from <see cref="RetryBaseDelayMilliseconds"/>).</summary>
    public int RetryAttempts { get; set; } = 2;

    public int RetryBaseDelayMilliseconds { get; set; } = 200;

    /// <summary>The circuit opens after this many failed calls within <see cref="CircuitSamplingSeconds"/> (at half of them failing).</summary>
    public int CircuitFailureThreshold { get; set; } = 3;

    public int CircuitSamplingSeconds { get; set; } = 30;

    /// <summary>The first break; each failed trial doubles it (with jitter) up to <see cref="CircuitMaxBreakSeconds"/>.</summary>
    public double CircuitBreakSeconds { get; set; } = 15;

    public double CircuitMaxBreakSeconds { get; set; } = 120;

    /// <summary>An entry that has failed without a success for this long is removed from the cache.</summary>
    public int EvictAfterFailingSeconds { get; set; } = 300;

    /// <summary>Command timeout for migrations, deploys and other operations the service runs itself.</summary>
    public int OperationTimeoutSeconds { get; set; } = 60;

    public int DefaultExecuteTimeoutSeconds { get; set; } = 30;
    public int MaxExecuteTimeoutSeconds { get; set; } = 300;
    public int DefaultMaxRows { get; set; } = 1000;
    public int MaxRows { get; set; } = 10_000;

    /// <summary>
    /// The cap on one execution's results (16 MiB): reading stops there, the command is cancelled and the answer is a
    /// 200 with truncated: true and truncatedReason "bytes".
    /// </summary>
    public long MaxResultBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>What one workspace may take of a server (section <c>Workspaces:Limits</c>).</summary>
    public WorkspaceLimits Limits { get; set; } = new();

    // The role passwords' key is Workspaces:SecretKey, read by WorkspaceSecrets (not bound here: it is a secret).
}

/// <summary>
/// Limits each PostgreSQL workspace role carries (set when its roles are created, and again by <c>migrate</c>), and
/// the cap on concurrent executions per workspace in each API instance.
/// </summary>
public sealed class WorkspaceLimits
{
    /// <summary>CONNECTION LIMIT of each environment's roles (1–1000): one workspace cannot take the server's connections.</summary>
    public int Connections { get; set; } = 10;

    /// <summary>temp_file_limit of the roles, in kB (1 GB): sorts and hashes that spill cannot fill the server's disk.</summary>
    public int TempFileLimitKilobytes { get; set; } = 1024 * 1024;

    /// <summary>work_mem of the roles, in kB (16 MB): per sort or hash node.</summary>
    public int WorkMemKilobytes { get; set; } = 16 * 1024;

    /// <summary>Executions running at once in one workspace (per API instance); one more is a 429 with Retry-After.</summary>
    public int ConcurrentExecutions { get; set; } = 4;

    /// <summary>The Retry-After (seconds) of that 429.</summary>
    public int RetryAfterSeconds { get; set; } = 2;
}
