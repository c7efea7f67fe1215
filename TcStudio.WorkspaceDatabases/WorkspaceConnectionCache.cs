using System.Data.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// The one component that connects to workspace databases.
/// <list type="bullet">
/// <item><b>On demand, validated.</b> An entry is created on first use from the environment's registered server and
/// database. The server must be registered and the database name a plain identifier (not a system or maintenance
/// database): otherwise <see cref="WorkspaceTargetException"/> (4xx) and no connection is attempted anywhere.</item>
/// <item><b>Cached per (workspace, environment)</b> and reused. Each entry owns its pools (one per credential),
/// bounded by Workspaces:MaxPoolSize and named after the workspace (Application Name <c>tcstudio/&lt;slug&gt;/&lt;env&gt;</c>),
/// so one workspace can never exhaust another's connections, nor the system database's (a separate pool).</item>
/// <item><b>Health.</b> An entry idle longer than Workspaces:IdleHealthCheck, or one that saw a failure, pings
/// its database before handing out a connection.</item>
/// <item><b>Bounded.</b> At most Workspaces:MaxCachedConnections entries; the least recently used is evicted and its
/// pools cleared. A timer removes entries idle longer than Workspaces:IdleEviction.</item>
/// <item><b>Failures.</b> Opening is retried with exponential backoff and jitter (short connect timeouts, so a dead or
/// hanging server fails in seconds); a failed open marks the entry unhealthy and surfaces as
/// <see cref="WorkspaceDatabaseUnavailableException"/> (naming the environment). After repeated failures a circuit
/// opens: callers are told it is unavailable (with a retry-after) at once, without touching the server, until a trial succeeds. The break
/// doubles (with jitter) after each failed trial. An entry failing for longer than Workspaces:EvictAfterFailing
/// is removed.</item>
/// <item><b>Ownership.</b> An entry is made from the environment's claim in the system database
/// (<see cref="IWorkspaceOwnershipSource"/>: its roles and their passwords); every connection its pools hand out is
/// checked to be the environment's own database (the marker inside it names the environment), else
/// <see cref="WorkspaceOwnershipException"/>. A refused password evicts the entry, so the next use reads the
/// claim again (roles are renewed by migrate).</item>
/// <item><b>Schema.</b> The workspace base schema's version is checked on an entry's first use and remembered
/// (re-checked while it is not current): see <see cref="WorkspaceDatabaseService"/>.</item>
/// <item><b>Metrics</b> (<see cref="WorkspaceDatabaseMetrics"/>) are tagged with the provider only.</item>
/// </list>
/// Thread-safe; a singleton per process.
/// </summary>
public sealed class WorkspaceConnectionCache : IAsyncDisposable
{
    private readonly WorkspaceServerRegistry _servers;
    private readonly IReadOnlyDictionary<string, IWorkspaceDatabaseProvider> _providers;
    private readonly IWorkspaceOwnershipSource _ownership;
    private readonly WorkspacesOptions _options;
    private readonly WorkspaceDatabaseMetrics _metrics;
    private readonly TimeProvider _clock;
    private readonly ILogger<WorkspaceConnectionCache> _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<(Guid Workspace, string Environment), Entry> _entries = [];
    private readonly LinkedList<Entry> _recency = []; // most recently used first
    private readonly ITimer _cleanup;

    public WorkspaceConnectionCache(WorkspaceServerRegistry servers, IEnumerable<IWorkspaceDatabaseProvider> providers,
        IWorkspaceOwnershipSource ownership,
        IOptions<WorkspacesOptions> options, WorkspaceDatabaseMetrics metrics, TimeProvider clock, ILogger<WorkspaceConnectionCache> logger)
    {
        _servers = servers;
        _ownership = ownership;
        _providers = providers.ToDictionary(p => p.Name, StringComparer.Ordinal);
        _options = options.Value;
        _metrics = metrics;
        _clock = clock;
        _logger = logger;
        var interval = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerSecond, _options.CleanupInterval.Ticks));
        _cleanup = clock.CreateTimer(_ => RemoveIdleAndFailing(), null, interval, interval);
        metrics.Observe(this);
    }

    /// <summary>Entries per provider, for the cached gauge.</summary>
    internal IEnumerable<(string Provider, int Count)> CountByProvider()
    {
        lock (_gate) return _entries.Values.GroupBy(e => e.Provider.Name).Select(g => (g.Key, g.Count())).ToList();
    }

    /// <summary>Open circuits per provider, for the circuit gauge.</summary>
    internal IEnumerable<(string Provider, int Count)> OpenCircuitsByProvider()
    {
        lock (_gate)
        {
            return _entries.Values.Where(e => e.Circuit.CircuitState is Polly.CircuitBreaker.CircuitState.Open
                or Polly.CircuitBreaker.CircuitState.Isolated)
                .GroupBy(e => e.Provider.Name).Select(g => (g.Key, g.Count())).ToList();
        }
    }

    public int Count
    {
        get { lock (_gate) return _entries.Count; }
    }

    public bool Contains(Guid workspaceId, string environment)
    {
        lock (_gate) return _entries.ContainsKey((workspaceId, environment));
    }

    /// <summary>closed, open, half-open, or null when the environment has no entry.</summary>
    public string? CircuitStateOf(Guid workspaceId, string environment)
    {
        lock (_gate)
        {
            if (!_entries.TryGetValue((workspaceId, environment), out var entry)) return null;
            return entry.Circuit.CircuitState switch
            {
                Polly.CircuitBreaker.CircuitState.Closed => "closed",
                Polly.CircuitBreaker.CircuitState.HalfOpen => "half-open",
                _ => "open",
            };
        }
    }

    /// <summary>The last connection failure of the environment's entry, if it is failing now.</summary>
    public string? LastFailure(Guid workspaceId, string environment)
    {
        lock (_gate) return _entries.TryGetValue((workspaceId, environment), out var entry) ? entry.LastFailure : null;
    }

    /// <summary>Checks a target without connecting: registered server, acceptable database name. Returns its provider.</summary>
    public IWorkspaceDatabaseProvider Validate(WorkspaceTarget target, out WorkspaceServer server)
    {
        server = _servers.Find(target.Server) ?? throw new WorkspaceTargetException(
            $"Environment '{target.Environment}' uses server '{target.Server}', which is not registered on this service.", target.Environment);
        var provider = ProviderFor(server.Provider);
        if (WorkspaceDatabaseNames.FindProblem(target.Database, server, provider) is { } problem)
        {
            throw new WorkspaceTargetException($"Environment '{target.Environment}': {problem}", target.Environment);
        }
        return provider;
    }

    public IWorkspaceDatabaseProvider ProviderFor(string provider) =>
        _providers.TryGetValue(provider, out var found) ? found
            : throw new InvalidOperationException($"No workspace database provider '{provider}'.");

    /// <summary>
    /// An open connection to the environment's database, with the given credential. Dispose the lease to return it.
    /// Throws <see cref="WorkspaceDatabaseUnavailableException"/> when the database cannot be reached.
    /// </summary>
    public async Task<WorkspaceConnectionLease> OpenAsync(WorkspaceTarget target, WorkspaceCredential credential, CancellationToken cancellationToken)
    {
        var provider = Validate(target, out var server);
        var entry = TryLease(target) ?? Lease(target, server, provider, await _ownership.FindAsync(target, server, cancellationToken));
        try
        {
            var connection = await entry.Pipeline.ExecuteAsync(async token =>
            {
                DbConnection? opened = null;
                try
                {
                    opened = await entry.Source.OpenAsync(credential, token);
                    if (entry.NeedsHealthCheck(_clock.GetUtcNow(), _options)) await provider.PingAsync(opened, token);
                    return opened;
                }
                catch (Exception e) when (WorkspaceFailures.IsConnectionFailure(e) && !token.IsCancellationRequested)
                {
                    if (opened is not null) await opened.DisposeAsync();
                    entry.Source.ClearPools(); // a server that restarted leaves broken idle connections behind
                    throw;
                }
            }, cancellationToken);
            entry.Succeeded(_clock.GetUtcNow());
            _metrics.Opened(provider.Name);
            return new WorkspaceConnectionLease(this, entry, connection, provider);
        }
        catch (BrokenCircuitException e)
        {
            Release(entry);
            var retryAfter = e.RetryAfter ?? _options.CircuitBreak;
            throw new WorkspaceDatabaseUnavailableException(
                $"Environment '{target.Environment}' is unavailable: its database failed repeatedly ({entry.LastFailure ?? "connection failures"}); "
                + $"not trying again for {Math.Ceiling(retryAfter.TotalSeconds):0} s.", target.Environment, retryAfter, circuitOpen: true, e);
        }
        catch (Exception e) when (WorkspaceFailures.IsConnectionFailure(e) && !cancellationToken.IsCancellationRequested)
        {
            var reason = WorkspaceFailures.Describe(e);
            Failed(entry, reason);
            if (FindPostgres(e) is { SqlState: Npgsql.PostgresErrorCodes.InvalidPassword
                or Npgsql.PostgresErrorCodes.InvalidAuthorizationSpecification })
            {
                // Roles renewed elsewhere (a migrate on another instance): read the claim again next time.
                lock (_gate) EvictLocked(entry, "credentials refused");
            }
            Release(entry);
            var retryAfter = TimeSpan.FromSeconds(Math.Min(_options.CircuitBreak.TotalSeconds, Math.Pow(2, Math.Min(entry.ConsecutiveFailures, 5))));
            throw new WorkspaceDatabaseUnavailableException(
                $"Environment '{target.Environment}' cannot reach its database: {reason}.", target.Environment, retryAfter,
                circuitOpen: false, e);
        }
        catch
        {
            Release(entry);
            throw;
        }
    }

    /// <summary>Forgets an environment (deleted, or its database dropped): its pools are cleared.</summary>
    public void Evict(Guid workspaceId, string environment, string reason = "removed")
    {
        lock (_gate)
        {
            if (_entries.TryGetValue((workspaceId, environment), out var entry)) EvictLocked(entry, reason);
        }
    }

    /// <summary>The periodic cleanup (also callable directly): idle entries and persistently failing ones go.</summary>
    public int RemoveIdleAndFailing()
    {
        var now = _clock.GetUtcNow();
        var removed = 0;
        lock (_gate)
        {
            foreach (var entry in _entries.Values.ToList())
            {
                if (entry.Leases == 0 && now - entry.LastUsed > _options.IdleEviction)
                {
                    EvictLocked(entry, "idle");
                    removed++;
                }
                else if (entry.FailingSince is { } since && now - since > _options.EvictAfterFailing)
                {
                    EvictLocked(entry, "failing");
                    removed++;
                }
            }
        }
        return removed;
    }

    /// <summary>The remembered schema status of an entry (null when unknown or the entry is gone).</summary>
    internal WorkspaceSchemaStatus? CachedSchema(WorkspaceTarget target)
    {
        lock (_gate)
        {
            return _entries.TryGetValue((target.WorkspaceId, target.Environment), out var entry) && Matches(entry, target) ? entry.Schema : null;
        }
    }

    internal void RememberSchema(WorkspaceTarget target, WorkspaceSchemaStatus? status)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue((target.WorkspaceId, target.Environment), out var entry) && Matches(entry, target)) entry.Schema = status;
        }
    }

    internal void ReportFailure(Entry entry, Exception exception)
    {
        // A connection that broke mid-operation: the next open pings first (the circuit counts opens only).
        entry.Suspect = true;
        entry.Source.ClearPools();
        _metrics.Failure(entry.Provider.Name);
        entry.LastFailure = WorkspaceFailures.Describe(exception);
    }

    /// <summary>The environment's current entry, leased; null when it has none yet (its claim must be read first).</summary>
    private Entry? TryLease(WorkspaceTarget target)
    {
        lock (_gate)
        {
            if (!_entries.TryGetValue((target.WorkspaceId, target.Environment), out var entry) || !Matches(entry, target)) return null;
            _recency.Remove(entry.Node!);
            _recency.AddFirst(entry.Node!);
            entry.Leases++;
            entry.LastUsed = _clock.GetUtcNow();
            return entry;
        }
    }

    private Entry Lease(WorkspaceTarget target, WorkspaceServer server, IWorkspaceDatabaseProvider provider, WorkspaceOwnership ownership)
    {
        lock (_gate)
        {
            var key = (target.WorkspaceId, target.Environment);
            if (_entries.TryGetValue(key, out var entry) && !Matches(entry, target))
            {
                EvictLocked(entry, "retargeted"); // the environment was re-created on another server or database
                entry = null;
            }
            if (entry is null)
            {
                var applicationName = $"tcstudio/{target.WorkspaceSlug}/{target.Environment}";
                var (pipeline, circuit) = BuildPipeline(target);
                entry = new Entry(target, server.Name, provider,
                    provider.CreateConnectionSource(server, target, ownership, applicationName, _options),
                    pipeline, circuit, _clock.GetUtcNow());
                _entries[key] = entry;
                entry.Node = _recency.AddFirst(entry);
                while (_entries.Count > Math.Max(1, _options.MaxCachedConnections))
                {
                    EvictLocked(_recency.Last!.Value, "least recently used");
                }
            }
            else
            {
                _recency.Remove(entry.Node!);
                _recency.AddFirst(entry.Node!);
            }
            entry.Leases++;
            entry.LastUsed = _clock.GetUtcNow();
            return entry;
        }
    }

    internal void Release(Entry entry)
    {
        bool dispose;
        lock (_gate)
        {
            entry.Leases--;
            entry.LastUsed = _clock.GetUtcNow();
            dispose = entry.Evicted && entry.Leases == 0;
        }
        if (dispose) _ = DisposeSourceAsync(entry);
    }

    private void Failed(Entry entry, string reason)
    {
        _metrics.Failure(entry.Provider.Name);
        var now = _clock.GetUtcNow();
        lock (_gate)
        {
            entry.ConsecutiveFailures++;
            entry.FailingSince ??= now;
            entry.LastFailure = reason;
            entry.Suspect = true;
            if (!entry.Evicted && now - entry.FailingSince.Value > _options.EvictAfterFailing)
            {
                EvictLocked(entry, "failing");
            }
        }
        _logger.LogWarning("Workspace database {Workspace}/{Environment} ({Provider}) cannot be reached: {Reason} (failure {Count})",
            entry.Target.WorkspaceSlug, entry.Target.Environment, entry.Provider.Name, reason, entry.ConsecutiveFailures);
    }

    private void EvictLocked(Entry entry, string reason)
    {
        if (entry.Evicted) return;
        entry.Evicted = true;
        _entries.Remove((entry.Target.WorkspaceId, entry.Target.Environment));
        _recency.Remove(entry.Node!);
        _metrics.Evicted(entry.Provider.Name);
        _logger.LogInformation("Evicted workspace database entry {Workspace}/{Environment} ({Reason})",
            entry.Target.WorkspaceSlug, entry.Target.Environment, reason);
        if (entry.Leases == 0) _ = DisposeSourceAsync(entry);
    }

    private async Task DisposeSourceAsync(Entry entry)
    {
        try
        {
            entry.Source.ClearPools();
            await entry.Source.DisposeAsync();
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "Disposing the pools of {Workspace}/{Environment} failed", entry.Target.WorkspaceSlug, entry.Target.Environment);
        }
    }

    private static bool Matches(Entry entry, WorkspaceTarget target) =>
        string.Equals(entry.Target.Server, target.Server, StringComparison.OrdinalIgnoreCase)
        && string.Equals(entry.Target.Database, target.Database, StringComparison.Ordinal)
        && entry.Target.EnvironmentId == target.EnvironmentId;

    private static Npgsql.PostgresException? FindPostgres(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is Npgsql.PostgresException pg) return pg;
        }
        return null;
    }

    private (ResiliencePipeline, CircuitBreakerStateProvider) BuildPipeline(WorkspaceTarget target)
    {
        var shouldHandle = new PredicateBuilder().Handle<Exception>(WorkspaceFailures.IsConnectionFailure);
        var circuit = new CircuitBreakerStateProvider();
        var builder = new ResiliencePipelineBuilder()
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = shouldHandle,
                FailureRatio = 0.5,
                MinimumThroughput = Math.Max(2, _options.CircuitFailureThreshold),
                SamplingDuration = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerSecond, _options.CircuitSampling.Ticks)),
                BreakDurationGenerator = args =>
                {
                    // Each failed trial doubles the break, with ±20 % jitter so many API instances do not retry in step.
                    var seconds = Math.Min(_options.CircuitMaxBreak.TotalSeconds,
                        _options.CircuitBreak.TotalSeconds * Math.Pow(2, args.HalfOpenAttempts));
                    return ValueTask.FromResult(TimeSpan.FromSeconds(Math.Max(0.5, seconds * (0.8 + Random.Shared.NextDouble() * 0.4))));
                },
                StateProvider = circuit,
                OnOpened = args =>
                {
                    _logger.LogWarning("Circuit opened for workspace database {Workspace}/{Environment} for {Seconds:0.0} s",
                        target.WorkspaceSlug, target.Environment, args.BreakDuration.TotalSeconds);
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    _logger.LogInformation("Circuit closed for workspace database {Workspace}/{Environment}", target.WorkspaceSlug,
                        target.Environment);
                    return ValueTask.CompletedTask;
                },
            });
        if (_options.RetryAttempts > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = shouldHandle,
                MaxRetryAttempts = _options.RetryAttempts,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, _options.RetryBaseDelay.Ticks)),
                MaxDelay = TimeSpan.FromSeconds(5),
            });
        }
        // A server that accepts TCP but never answers must not hold the caller longer than the connect timeout.
        var pipeline = builder.AddTimeout(TimeSpan.FromSeconds(WorkspacesOptions.WholeSeconds(_options.ConnectTimeout) + 1)).Build();
        return (pipeline, circuit);
    }

    public async ValueTask DisposeAsync()
    {
        await _cleanup.DisposeAsync();
        List<Entry> entries;
        lock (_gate)
        {
            entries = _entries.Values.ToList();
            _entries.Clear();
            _recency.Clear();
        }
        foreach (var entry in entries) await DisposeSourceAsync(entry);
    }

    /// <summary>One cached (workspace, environment): its pools, its resilience pipeline and its health.</summary>
    internal sealed class Entry
    {
        public Entry(WorkspaceTarget target, string server, IWorkspaceDatabaseProvider provider, IWorkspaceConnectionSource source,
            ResiliencePipeline pipeline, CircuitBreakerStateProvider circuit, DateTimeOffset now)
        {
            Circuit = circuit;
            Target = target;
            Server = server;
            Provider = provider;
            Source = source;
            Pipeline = pipeline;
            LastUsed = now;
            LastVerified = now;
        }

        public WorkspaceTarget Target { get; }
        public string Server { get; }
        public IWorkspaceDatabaseProvider Provider { get; }
        public IWorkspaceConnectionSource Source { get; }
        public ResiliencePipeline Pipeline { get; }
        public CircuitBreakerStateProvider Circuit { get; }
        public LinkedListNode<Entry>? Node { get; set; }
        public int Leases { get; set; }
        public bool Evicted { get; set; }
        public DateTimeOffset LastUsed { get; set; }
        public DateTimeOffset LastVerified { get; set; }
        public bool Suspect { get; set; }
        public int ConsecutiveFailures { get; set; }
        public DateTimeOffset? FailingSince { get; set; }
        public string? LastFailure { get; set; }
        public WorkspaceSchemaStatus? Schema { get; set; }

        public bool NeedsHealthCheck(DateTimeOffset now, WorkspacesOptions options) =>
            Suspect || now - LastVerified > options.IdleHealthCheck;

        public void Succeeded(DateTimeOffset now)
        {
            LastVerified = now;
            Suspect = false;
            ConsecutiveFailures = 0;
            FailingSince = null;
            LastFailure = null;
        }
    }
}

/// <summary>An open connection from <see cref="WorkspaceConnectionCache"/>; disposing returns it to its workspace's pool.</summary>
public sealed class WorkspaceConnectionLease : IAsyncDisposable
{
    private readonly WorkspaceConnectionCache _cache;
    private readonly WorkspaceConnectionCache.Entry _entry;
    private int _disposed;

    internal WorkspaceConnectionLease(WorkspaceConnectionCache cache, WorkspaceConnectionCache.Entry entry, DbConnection connection,
        IWorkspaceDatabaseProvider provider)
    {
        _cache = cache;
        _entry = entry;
        Connection = connection;
        Provider = provider;
    }

    public DbConnection Connection { get; }
    public IWorkspaceDatabaseProvider Provider { get; }
    public WorkspaceTarget Target => _entry.Target;

    /// <summary>Tells the cache the connection broke mid-operation, so the entry is checked before its next use.</summary>
    public void ReportConnectionFailure(Exception exception) => _cache.ReportFailure(_entry, exception);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        try
        {
            await Connection.DisposeAsync();
        }
        finally
        {
            _cache.Release(_entry);
        }
    }
}
