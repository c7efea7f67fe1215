using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace TcStudio.SystemDatabase.Activities;

/// <summary>One activity as the live stream reads it: its stream position and what the activity log shows of it.</summary>
public sealed record ActivityStreamRow(ActivityStreamPosition Position, Guid Id, string Action, string EntityType, Guid? EntityId,
    string? Username, string? DetailsJson, DateTimeOffset CreatedAt);

/// <param name="Rows">Rows after the position asked for, in stream order, all below the horizon.</param>
/// <param name="Horizon">
/// The read's transaction horizon (<see cref="ActivityStreamDatabase.HorizonCte"/>): no row below it can appear any
/// more. After a read that was not full, everything before <c>Before(Horizon)</c> has been seen.
/// </param>
/// <param name="Pending">The workspace has committed rows at or above the horizon, held back by an older transaction.</param>
public sealed record ActivityStreamBatch(IReadOnlyList<ActivityStreamRow> Rows, ulong Horizon, bool Pending)
{
    public ActivityStreamPosition SeenUpTo(int limit, ActivityStreamPosition after)
    {
        var last = Rows.Count > 0 ? Rows[^1].Position : after;
        return Rows.Count < limit ? ActivityStreamPosition.Max(last, ActivityStreamPosition.Before(Horizon)) : last;
    }
}

/// <summary>
/// The live activity stream's access to the system database, always on the <b>primary</b> (never a standby, even when
/// other reads are routed to standbys): a standby's snapshots and transaction horizon lag the primary's, and
/// NOTIFY is not delivered on standbys. Two data sources of its own:
/// <list type="bullet">
/// <item><see cref="OpenPrimaryListenerConnectionAsync"/>: unpooled, one long-lived LISTEN connection per API instance;</item>
/// <item>the gap-filling reads (<see cref="ReadFromPrimaryAsync"/>, <see cref="ReadPrimaryHorizonAsync"/>): a small pool
/// of their own (Events:MaxReadConnections), each read one statement in one implicit transaction, the connection
/// returned at once, so no stream holds a connection while it waits.</item>
/// </list>
/// </summary>
/// <remarks>
/// The commit-safe order (README, "Live events"): every row carries the id of the transaction that inserted it
/// (<c>activities.xid</c>, default pg_current_xact_id()). A read hands out only rows whose xid is below the horizon
/// of its own snapshot (transactions that had all finished), in (xid, id) order. A transaction still running has an
/// xid at or above the horizon, and one that starts later gets a larger xid still, so no row can ever appear before a
/// position already handed out: nothing is skipped, nothing is handed out twice.
/// </remarks>
public sealed class ActivityStreamDatabase : IAsyncDisposable
{
    /// <summary>The NOTIFY channel of trg_activities_notify_stream; payload: workspace ids, comma-separated, or '*'.</summary>
    public const string NotifyChannel = "tcstudio_activities";

    public const string ReadsDataSourceName = "tcstudio-stream-primary";
    public const string ListenerDataSourceName = "tcstudio-stream-listener";

    /// <summary>
    /// The horizon of the statement's snapshot for this database: the oldest transaction that was still running when
    /// the snapshot was taken and may write here, or the snapshot's xmax when there is none. Every transaction below
    /// it had finished (its rows are visible or never will be); any that writes a row later has an id at or above it.
    /// Transactions of other databases on the same server (their backends' datid says so) cannot write this table and
    /// are left out, so a long transaction in a workspace database on the same server does not hold the stream back.
    /// One whose database is not known (it ended between the snapshot and the look at pg_stat_activity, or the role may
    /// not see it) counts as this database's: that can only delay an event, never skip one.
    /// </summary>
    internal const string HorizonCte = """
        snapshot AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
        horizon AS MATERIALIZED (
            SELECT coalesce(min(x), pg_snapshot_xmax((SELECT s FROM snapshot))) AS xmin
            FROM pg_snapshot_xip((SELECT s FROM snapshot)) AS x
            WHERE x::xid NOT IN (
                SELECT a.backend_xid FROM pg_stat_activity a
                WHERE a.backend_xid IS NOT NULL
                  AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())))
        """;

    internal const string SetWorkspaceSql = "SELECT set_config('tcstudio.workspace_id', $1, true)";

    internal const string HorizonSql = "WITH " + HorizonCte + " SELECT xmin FROM horizon";

    // One statement, one snapshot: the horizon, whether committed rows wait above it, and the rows below it after the
    // position. The lateral read walks ix_activities_workspace_id_xid (workspace_id, xid, id) from the position on.
    internal const string ReadAfterSql = "WITH " + HorizonCte + """
        ,
        probe AS MATERIALIZED (
            -- The workspace's newest xid, one step down the index backwards (an EXISTS on xid >= horizon lets the
            -- planner pick a sequential scan of the whole table, hoping to meet such a row early).
            SELECT h.xmin,
                   coalesce((SELECT p.xid FROM activities p WHERE p.workspace_id = $1 ORDER BY p.xid DESC LIMIT 1) >= h.xmin, false) AS pending
            FROM horizon h)
        SELECT h.xmin, h.pending, a.xid, a.id, a.action, a.entity_type, a.entity_id, u.username, a.details::text, a.created_at
        FROM probe h
        LEFT JOIN LATERAL (
            SELECT * FROM activities a
            WHERE a.workspace_id = $1 AND (a.xid, a.id) > ($2, $3) AND a.xid < h.xmin
            ORDER BY a.xid, a.id
            LIMIT $4) a ON true
        LEFT JOIN users u ON u.id = a.user_id
        ORDER BY a.xid, a.id
        """;

    private readonly NpgsqlDataSource _readsSource;
    private readonly NpgsqlDataSource _primaryReads;
    private readonly NpgsqlDataSource _listenerSource;
    private readonly NpgsqlDataSource _primaryListener;
    private readonly SemaphoreSlim _readSlots;

    public ActivityStreamDatabase(IConfiguration configuration, IHostEnvironment environment, IOptions<ActivityStreamOptions> options,
        ILoggerFactory loggers)
    {
        var maxReads = options.Value.MaxReadConnections;
        var reads = SystemDatabaseConnection.Build(configuration, environment.ApplicationName);
        reads.MinPoolSize = 0;
        reads.MaxPoolSize = maxReads;
        var readsBuilder = new NpgsqlDataSourceBuilder(reads.ConnectionString) { Name = ReadsDataSourceName };
        readsBuilder.UseLoggerFactory(loggers);
        (_readsSource, _primaryReads) = PrimaryOnly(readsBuilder);
        // Reads queue here rather than in Npgsql's pool, whose wait is bounded by the connect timeout: a thousand
        // streams reconnecting at once must wait their turn, not fail.
        _readSlots = new SemaphoreSlim(maxReads, maxReads);

        var listener = SystemDatabaseConnection.Build(configuration, environment.ApplicationName);
        listener.Pooling = false;
        listener.ApplicationName = $"{listener.ApplicationName} activity-listener";
        // Keepalive probes notice a peer that vanished without closing the socket (the health-check round trip too).
        listener.TcpKeepAlive = true;
        // With several hosts, a lost connection must not make the primary count as down for Npgsql's default 10 s:
        // the listener's own backoff paces its attempts, and it opens a connection only to replace a lost one.
        listener.HostRecheckSeconds = 0;
        var listenerBuilder = new NpgsqlDataSourceBuilder(listener.ConnectionString) { Name = ListenerDataSourceName };
        listenerBuilder.UseLoggerFactory(loggers);
        // LISTEN and the idle health check are plumbing, not work: kept out of traces and query metrics.
        listenerBuilder.ConfigureTracing(tracing => tracing.ConfigureCommandFilter(_ => false));
        (_listenerSource, _primaryListener) = PrimaryOnly(listenerBuilder);
    }

    /// <summary>
    /// A data source that only ever connects to the primary. With one host (today's configuration: the system
    /// database's connection string names the primary) a plain data source; with several (a primary and standbys),
    /// Npgsql's multi-host data source restricted to the primary.
    /// </summary>
    private static (NpgsqlDataSource Owner, NpgsqlDataSource Primary) PrimaryOnly(NpgsqlDataSourceBuilder builder)
    {
        if (builder.ConnectionStringBuilder.Host?.Contains(',') != true)
        {
            var single = builder.Build();
            return (single, single);
        }
        var multi = builder.BuildMultiHost();
        return (multi, multi.WithTargetSession(TargetSessionAttributes.Primary));
    }

    /// <summary>A new physical connection to the primary, owned by the caller (the one listener of this instance).</summary>
    public async Task<NpgsqlConnection> OpenPrimaryListenerConnectionAsync(CancellationToken cancellationToken) =>
        await _primaryListener.OpenConnectionAsync(cancellationToken);

    /// <summary>The current transaction horizon on the primary (no table is read).</summary>
    public async Task<ulong> ReadPrimaryHorizonAsync(CancellationToken cancellationToken)
    {
        await _readSlots.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await _primaryReads.OpenConnectionAsync(cancellationToken);
            await using var command = new NpgsqlCommand(HorizonSql, connection);
            return (ulong)(await command.ExecuteScalarAsync(cancellationToken))!;
        }
        finally
        {
            _readSlots.Release();
        }
    }

    /// <summary>
    /// Up to <paramref name="limit"/> rows of one workspace after <paramref name="after"/> in stream order, from the
    /// primary, in one batch: one implicit transaction whose first command declares the workspace to row-level
    /// security (set_config('tcstudio.workspace_id', …, true), transaction-local like every such setting).
    /// </summary>
    public async Task<ActivityStreamBatch> ReadFromPrimaryAsync(Guid workspaceId, ActivityStreamPosition after, int limit,
        CancellationToken cancellationToken)
    {
        await _readSlots.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await _primaryReads.OpenConnectionAsync(cancellationToken);
            await using var batch = new NpgsqlBatch(connection)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand(SetWorkspaceSql) { Parameters = { new NpgsqlParameter { Value = workspaceId.ToString("D") } } },
                    new NpgsqlBatchCommand(ReadAfterSql)
                    {
                        Parameters =
                        {
                            new NpgsqlParameter { Value = workspaceId, NpgsqlDbType = NpgsqlDbType.Uuid },
                            new NpgsqlParameter { Value = after.TransactionId, NpgsqlDbType = NpgsqlDbType.Xid8 },
                            new NpgsqlParameter { Value = after.Id, NpgsqlDbType = NpgsqlDbType.Uuid },
                            new NpgsqlParameter { Value = limit, NpgsqlDbType = NpgsqlDbType.Integer },
                        },
                    },
                },
            };
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
            await reader.NextResultAsync(cancellationToken); // past set_config's row
            var rows = new List<ActivityStreamRow>();
            ulong horizon = 0;
            var pending = false;
            while (await reader.ReadAsync(cancellationToken))
            {
                horizon = reader.GetFieldValue<ulong>(0);
                pending = reader.GetBoolean(1);
                if (reader.IsDBNull(2)) continue; // the horizon row alone: nothing to hand out
                rows.Add(new ActivityStreamRow(
                    new ActivityStreamPosition(reader.GetFieldValue<ulong>(2), reader.GetGuid(3)),
                    reader.GetGuid(3),
                    reader.GetString(4),
                    reader.GetString(5),
                    reader.IsDBNull(6) ? null : reader.GetGuid(6),
                    reader.IsDBNull(7) ? null : reader.GetString(7),
                    reader.IsDBNull(8) ? null : reader.GetString(8),
                    reader.GetFieldValue<DateTimeOffset>(9)));
            }
            return new ActivityStreamBatch(rows, horizon, pending);
        }
        finally
        {
            _readSlots.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _readsSource.DisposeAsync();
        await _listenerSource.DisposeAsync();
        _readSlots.Dispose();
    }
}
