using Microsoft.Extensions.Options;
using Npgsql;

namespace TcStudio.SystemDatabase.Insights;

/// <summary>A statement running (or a transaction idling) longer than the threshold: for <c>GET /api/admin/database/long-running</c>.</summary>
public sealed record LongRunningQuery(
    int Pid,
    string? User,
    string? Application,
    string? ClientAddress,
    string State,
    string? WaitEvent,
    DateTimeOffset QueryStart,
    double DurationSeconds,
    string? Query);

/// <summary>
/// Sessions on the system database whose current statement started longer ago than the threshold (not idle; an
/// "idle in transaction" session counts: it holds locks and snapshots), oldest first, from pg_stat_activity.
/// Another role's sessions show without their query unless the service's role may read all statistics.
/// </summary>
public sealed class LongRunningQueryInsights(NpgsqlDataSource dataSource, IOptionsMonitor<DatabaseOptions> options)
{
    public const int MaxQueryLength = 4000;

    public async Task<IReadOnlyList<LongRunningQuery>> GetAsync(TimeSpan? threshold = null, CancellationToken cancellationToken = default)
    {
        var minimum = threshold ?? options.CurrentValue.LongRunningQueryThreshold;
        if (minimum < TimeSpan.Zero) minimum = TimeSpan.Zero;
        return await CatalogQuery.ListAsync(dataSource,
            """
            SELECT pid, usename, application_name, host(client_addr), state,
                   CASE WHEN wait_event IS NULL THEN NULL ELSE wait_event_type || ':' || wait_event END,
                   query_start, extract(epoch FROM clock_timestamp() - query_start)::float8, left(query, @max_query_length)
            FROM pg_stat_activity
            WHERE datname = current_database()
              AND pid <> pg_backend_pid()
              AND backend_type = 'client backend'
              AND state IS NOT NULL AND state <> 'idle'
              AND query_start <= clock_timestamp() - @threshold
            ORDER BY query_start
            """,
            r => new LongRunningQuery(r.GetInt32(0), r.Nullable<string>(1), r.Nullable<string>(2), r.Nullable<string>(3),
                r.GetString(4), r.Nullable<string>(5), r.GetFieldValue<DateTimeOffset>(6), Math.Round(r.GetDouble(7), 2),
                r.Nullable<string>(8)),
            cancellationToken,
            new NpgsqlParameter("threshold", minimum), new NpgsqlParameter("max_query_length", MaxQueryLength));
    }
}
