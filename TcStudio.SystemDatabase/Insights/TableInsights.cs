using Npgsql;

namespace TcStudio.SystemDatabase.Insights;

/// <summary>One table's size and activity: for <c>GET /api/admin/database/tables</c>.</summary>
public sealed record TableStatistics(
    string Schema,
    string Name,
    long TotalBytes,
    long TableBytes,
    long IndexBytes,
    long LiveTuples,
    long DeadTuples,
    long SequentialScans,
    long IndexScans,
    DateTimeOffset? LastVacuum,
    DateTimeOffset? LastAnalyze);

/// <summary>
/// The user tables of the system database, largest first: sizes (with indexes and TOAST), live and dead tuples, and
/// sequential against index scans (a big table read mostly by sequential scans wants an index). The counters come
/// from PostgreSQL's cumulative statistics, since they were last reset.
/// </summary>
public sealed class TableInsights(NpgsqlDataSource dataSource)
{
    public const int MaxLimit = 500;

    public async Task<IReadOnlyList<TableStatistics>> GetAsync(int limit = 100, CancellationToken cancellationToken = default) =>
        await CatalogQuery.ListAsync(dataSource,
            """
            SELECT schemaname, relname,
                   pg_total_relation_size(relid), pg_relation_size(relid), pg_indexes_size(relid),
                   n_live_tup, n_dead_tup, seq_scan, coalesce(idx_scan, 0),
                   greatest(last_vacuum, last_autovacuum), greatest(last_analyze, last_autoanalyze)
            FROM pg_stat_user_tables
            ORDER BY 3 DESC, 1, 2
            LIMIT @limit
            """,
            r => new TableStatistics(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4),
                r.GetInt64(5), r.GetInt64(6), r.GetInt64(7), r.GetInt64(8), r.NullableTimestamp(9), r.NullableTimestamp(10)),
            cancellationToken, new NpgsqlParameter("limit", Math.Clamp(limit, 1, MaxLimit)));
}
