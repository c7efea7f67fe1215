using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// The configuration section <c>Workspaces</c>: how workspace databases are connected to, cached, guarded and
/// executed against. Every value has a default that suits a small team; tests shrink the intervals.
/// </summary>
public sealed class WorkspacesOptions
{
    public const string SectionName = "Workspaces";

    /// <summary>The keys that were numbers of seconds or milliseconds; still read, with a deprecation line at start.</summary>
    public static readonly IReadOnlyList<RenamedKey> RenamedKeys =
    [
        RenamedKey.FromSeconds(SectionName, "ConnectTimeoutSeconds", nameof(ConnectTimeout)),
        RenamedKey.FromSeconds(SectionName, "IdleHealthCheckSeconds", nameof(IdleHealthCheck)),
        RenamedKey.FromSeconds(SectionName, "IdleEvictionSeconds", nameof(IdleEviction)),
        RenamedKey.FromSeconds(SectionName, "CleanupIntervalSeconds", nameof(CleanupInterval)),
        RenamedKey.FromMilliseconds(SectionName, "RetryBaseDelayMilliseconds", nameof(RetryBaseDelay)),
        RenamedKey.FromSeconds(SectionName, "CircuitSamplingSeconds", nameof(CircuitSampling)),
        RenamedKey.FromSeconds(SectionName, "CircuitBreakSeconds", nameof(CircuitBreak)),
        RenamedKey.FromSeconds(SectionName, "CircuitMaxBreakSeconds", nameof(CircuitMaxBreak)),
        RenamedKey.FromSeconds(SectionName, "EvictAfterFailingSeconds", nameof(EvictAfterFailing)),
        RenamedKey.FromSeconds(SectionName, "OperationTimeoutSeconds", nameof(OperationTimeout)),
        RenamedKey.FromSeconds(SectionName, "DefaultExecuteTimeoutSeconds", nameof(DefaultExecuteTimeout)),
        RenamedKey.FromSeconds(SectionName, "MaxExecuteTimeoutSeconds", nameof(MaxExecuteTimeout)),
    ];

    /// <summary>Npgsql and SqlClient count timeouts in whole seconds: a fraction rounds up (never to 0, "no limit").</summary>
    public static int WholeSeconds(TimeSpan duration) => Math.Max(1, (int)Math.Ceiling(duration.TotalSeconds));

    /// <summary>At most this many (workspace, environment) entries stay cached; the least recently used goes first.</summary>
    public int MaxCachedConnections { get; set; } = 100;

    /// <summary>Each workspace's own pool (per credential) holds at most this many connections.</summary>
    public int MaxPoolSize { get; set; } = 10;

    /// <summary>Short on purpose: a dead server must fail fast, not hold requests (whole seconds).</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>An entry unused for longer than this is pinged before it is used again.</summary>
    public TimeSpan IdleHealthCheck { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>An entry unused for longer than this is removed by the periodic cleanup (its pools cleared).</summary>
    public TimeSpan IdleEviction { get; set; } = TimeSpan.FromMinutes(10);

    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Retries of one connection attempt (exponential backoff with jitter from <see cref="RetryBaseDelay"/>).</summary>
    public int RetryAttempts { get; set; } = 2;

    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The circuit opens after this many failed calls within <see cref="CircuitSampling"/> (at half of them failing).</summary>
    public int CircuitFailureThreshold { get; set; } = 3;

    public TimeSpan CircuitSampling { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The first break; each failed trial doubles it (with jitter) up to <see cref="CircuitMaxBreak"/>.</summary>
    public TimeSpan CircuitBreak { get; set; } = TimeSpan.FromSeconds(15);

    public TimeSpan CircuitMaxBreak { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>An entry that has failed without a success for this long is removed from the cache.</summary>
    public TimeSpan EvictAfterFailing { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Command timeout for migrations, deploys and other operations the service runs itself (whole seconds).</summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>An execution's timeout when the request gives none (whole seconds).</summary>
    public TimeSpan DefaultExecuteTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The largest <c>timeoutSeconds</c> a request may ask for (whole seconds).</summary>
    public TimeSpan MaxExecuteTimeout { get; set; } = TimeSpan.FromSeconds(300);

    public int DefaultMaxRows { get; set; } = 1000;
    public int MaxRows { get; set; } = 10_000;

    /// <summary>
    /// The cap on one execution's results (16 MiB): reading stops there, the command is cancelled and the answer is a
    /// 200 with truncated: true and truncatedReason "bytes".
    /// </summary>
    public long MaxResultBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>What one workspace may take of a server (section <c>Workspaces:Limits</c>).</summary>
    public WorkspaceLimits Limits { get; set; } = new();

    /// <summary>The first bad key, in one line (ValidateOnStart); never a value.</summary>
    public static string? FindError(WorkspacesOptions o)
    {
        const string s = SectionName;
        var positive = new (string Name, TimeSpan Value)[]
        {
            (nameof(ConnectTimeout), o.ConnectTimeout), (nameof(IdleEviction), o.IdleEviction), (nameof(CleanupInterval), o.CleanupInterval),
            (nameof(RetryBaseDelay), o.RetryBaseDelay), (nameof(CircuitSampling), o.CircuitSampling), (nameof(CircuitBreak), o.CircuitBreak),
            (nameof(CircuitMaxBreak), o.CircuitMaxBreak), (nameof(EvictAfterFailing), o.EvictAfterFailing),
            (nameof(OperationTimeout), o.OperationTimeout), (nameof(DefaultExecuteTimeout), o.DefaultExecuteTimeout),
            (nameof(MaxExecuteTimeout), o.MaxExecuteTimeout),
        };
        foreach (var (name, value) in positive)
        {
            if (value <= TimeSpan.Zero || value > TimeSpan.FromDays(1)) return $"{s}:{name} must be a duration from 00:00:00.001 to 1.00:00:00.";
        }
        return o.IdleHealthCheck < TimeSpan.Zero ? $"{s}:IdleHealthCheck must not be negative (0: ping before every reuse)."
            : o.CircuitMaxBreak < o.CircuitBreak ? $"{s}:CircuitMaxBreak must not be shorter than {s}:CircuitBreak."
            : o.DefaultExecuteTimeout > o.MaxExecuteTimeout ? $"{s}:DefaultExecuteTimeout must not be longer than {s}:MaxExecuteTimeout."
            : o.MaxCachedConnections < 1 ? $"{s}:MaxCachedConnections must be 1 or more."
            : o.MaxPoolSize < 1 ? $"{s}:MaxPoolSize must be 1 or more."
            : o.RetryAttempts < 0 ? $"{s}:RetryAttempts must be 0 or more."
            : o.CircuitFailureThreshold < 1 ? $"{s}:CircuitFailureThreshold must be 1 or more."
            : o.DefaultMaxRows < 1 || o.DefaultMaxRows > o.MaxRows ? $"{s}:DefaultMaxRows must be from 1 to {s}:MaxRows."
            : o.MaxResultBytes < 1 ? $"{s}:MaxResultBytes must be 1 or more."
            : o.Limits.FindError($"{s}:{nameof(Limits)}");
    }

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

    /// <summary>
    /// The first value out of range, in one line naming its key under <paramref name="section"/>; the bounds are what
    /// PostgreSQL accepts for the role settings (work_mem from 64 kB) and what keeps one workspace from taking a server.
    /// </summary>
    public string? FindError(string section) =>
        Connections is < 1 or > 1000 ? $"{section}:{nameof(Connections)} must be from 1 to 1000."
        : TempFileLimitKilobytes < 1 ? $"{section}:{nameof(TempFileLimitKilobytes)} must be 1 or more (kB)."
        : WorkMemKilobytes is < 64 or > 2 * 1024 * 1024 ? $"{section}:{nameof(WorkMemKilobytes)} must be from 64 to 2097152 (kB)."
        : ConcurrentExecutions is < 1 or > 10_000 ? $"{section}:{nameof(ConcurrentExecutions)} must be from 1 to 10000."
        : RetryAfterSeconds is < 1 or > 3600 ? $"{section}:{nameof(RetryAfterSeconds)} must be from 1 to 3600."
        : null;
}
