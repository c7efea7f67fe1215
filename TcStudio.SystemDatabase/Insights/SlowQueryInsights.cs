using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.DatabaseTelemetry;

namespace TcStudio.SystemDatabase.Insights;

/// <summary>The slowest statements: for <c>GET /api/admin/database/slow-queries</c>. <see cref="Source"/> says where they came from.</summary>
public sealed record SlowQueryReport(string Source, double MinMeanMs, IReadOnlyList<SlowQueryStatistic> Queries);

/// <summary>
/// One statement's figures. From pg_stat_statements the query is normalised (constants as $1, $2…) and the figures
/// cover every call since the statistics were last reset; from the in-memory log they cover only the slow calls this
/// process saw, and <see cref="LastCaller"/> names the endpoint or verb of the latest one.
/// </summary>
public sealed record SlowQueryStatistic(
    string Query,
    long Calls,
    double TotalMs,
    double MeanMs,
    double MaxMs,
    long? Rows,
    DateTimeOffset? LastSeenAt,
    string? LastCaller);

/// <summary>
/// Reads the slowest statements of the system database from <c>pg_stat_statements</c> when the server has it
/// (creating the extension in this database first when the server preloads it, the role may, and
/// Database:CreateStatStatementsExtension allows it), else from this process's in-memory <see cref="SlowQueryLog"/>.
/// </summary>
public sealed partial class SlowQueryInsights(
    NpgsqlDataSource dataSource, SlowQueryLog slowQueries, IOptionsMonitor<DatabaseOptions> options,
    ILogger<SlowQueryInsights> logger)
{
    public const string StatStatementsSource = "pg_stat_statements";
    public const string InMemorySource = "in-memory";
    public const int MaxLimit = 200;

    /// <param name="minMeanMs">Statements whose mean time is at least this; defaults to Database:SlowQueryThreshold.</param>
    /// <param name="limit">At most this many, by total time spent, largest first.</param>
    public async Task<SlowQueryReport> GetAsync(double? minMeanMs = null, int limit = 20, CancellationToken cancellationToken = default)
    {
        var threshold = Math.Max(0, minMeanMs ?? options.CurrentValue.SlowQueryThreshold.TotalMilliseconds);
        limit = Math.Clamp(limit, 1, MaxLimit);

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        if (await StatStatementsReadyAsync(connection, cancellationToken))
        {
            var rows = await CatalogQuery.ListAsync(connection,
                """
                SELECT query, calls, total_exec_time, mean_exec_time, max_exec_time, rows
                FROM pg_stat_statements
                WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND mean_exec_time >= @min_mean_ms
                ORDER BY total_exec_time DESC
                LIMIT @limit
                """,
                r => new SlowQueryStatistic(r.GetString(0), r.GetInt64(1), Math.Round(r.GetDouble(2), 2),
                    Math.Round(r.GetDouble(3), 2), Math.Round(r.GetDouble(4), 2), r.GetInt64(5), null, null),
                cancellationToken,
                new NpgsqlParameter("min_mean_ms", threshold), new NpgsqlParameter("limit", limit));
            return new SlowQueryReport(StatStatementsSource, threshold, rows);
        }

        // Only this database's: the log holds every slow command of the process, workspace databases' included.
        var database = connection.Database;
        var queries = slowQueries.Snapshot()
            .Where(q => q.Database == database)
            .GroupBy(q => q.Sql)
            .Select(g => new SlowQueryStatistic(g.Key, g.Count(), Math.Round(g.Sum(q => q.DurationMs), 2),
                Math.Round(g.Average(q => q.DurationMs), 2), g.Max(q => q.DurationMs), null,
                g.Max(q => q.StartedAt), g.First().Caller)) // Snapshot is newest first
            .Where(q => q.MeanMs >= threshold)
            .OrderByDescending(q => q.TotalMs)
            .Take(limit)
            .ToList();
        return new SlowQueryReport(InMemorySource, threshold, queries);
    }

    /// <summary>True when pg_stat_statements can be read in this database, creating the extension if allowed.</summary>
    private async Task<bool> StatStatementsReadyAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var (installed, available, preloaded, superuser, version) = (await CatalogQuery.ListAsync(connection,
            """
            SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),
                   EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'),
                   (SELECT position('pg_stat_statements' IN setting) > 0 FROM pg_settings WHERE name = 'shared_preload_libraries'),
                   (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                   current_setting('server_version_num')::int
            """,
            r => (r.GetBoolean(0), r.GetBoolean(1), r.IsDBNull(2) ? (bool?)null : r.GetBoolean(2), r.GetBoolean(3), r.GetInt32(4)),
            cancellationToken))[0];

        // Without the preloaded library the view exists but every read fails; before 13 its columns had other names.
        // A role without pg_read_all_settings (the app role) cannot see shared_preload_libraries: then the read is tried.
        if (preloaded == false || version < 130000) return false;
        if (installed) return preloaded == true || await StatStatementsReadableAsync(connection, cancellationToken);
        if (!available || !superuser || !options.CurrentValue.CreateStatStatementsExtension) return false;

        try
        {
            await using var create = new NpgsqlCommand("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
            LogExtensionCreated(logger, connection.Database);
            return true;
        }
        catch (PostgresException e)
        {
            LogExtensionRefused(logger, e.SqlState, e.MessageText);
            return false;
        }
    }

    private static async Task<bool> StatStatementsReadableAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            await using var probe = new NpgsqlCommand("SELECT 1 FROM pg_stat_statements LIMIT 1", connection);
            await probe.ExecuteNonQueryAsync(cancellationToken);
            return true;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectNotInPrerequisiteState)
        {
            return false; // "pg_stat_statements must be loaded via shared_preload_libraries"
        }
    }

    [LoggerMessage(EventId = 4201, Level = LogLevel.Information,
        Message = "Created the pg_stat_statements extension in database {Database} for the slow-query insights")]
    private static partial void LogExtensionCreated(ILogger logger, string database);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Warning,
        Message = "Could not create pg_stat_statements ({SqlState} {Reason}); slow-query insights use the in-memory log")]
    private static partial void LogExtensionRefused(ILogger logger, string sqlState, string reason);
}
