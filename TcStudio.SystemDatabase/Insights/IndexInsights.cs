using Npgsql;

namespace TcStudio.SystemDatabase.Insights;

/// <summary>Indexes worth a second look: for <c>GET /api/admin/database/indexes</c>.</summary>
/// <param name="StatisticsSince">When this database's statistics were last reset (null: never): "unused" means since then.</param>
public sealed record IndexReport(
    IReadOnlyList<UnusedIndex> Unused,
    IReadOnlyList<DuplicateIndex> Duplicates,
    DateTimeOffset? StatisticsSince);

/// <summary>An index no scan has used, that enforces nothing (neither unique, primary key nor constraint).</summary>
public sealed record UnusedIndex(string Schema, string Table, string Index, long Bytes, string Definition);

/// <summary>An index whose key columns are a leading prefix of another valid index on the same table (<see cref="CoveredBy"/>).</summary>
public sealed record DuplicateIndex(
    string Schema, string Table, string Index, long Bytes, string Definition, string CoveredBy, string CoveredByDefinition);

/// <summary>
/// Finds unused and duplicate indexes in the system database. A duplicate is a plain (not unique, not primary)
/// B-tree index whose key columns and operator classes are a leading prefix of another valid B-tree index's on the
/// same table with the same predicate: every query it serves, the other serves too. Expression indexes are left
/// alone. Of two identical plain indexes, the newer one is reported.
/// </summary>
public sealed class IndexInsights(NpgsqlDataSource dataSource)
{
    public async Task<IndexReport> GetAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);

        var unused = await CatalogQuery.ListAsync(connection,
            """
            SELECT s.schemaname, s.relname, s.indexrelname, pg_relation_size(s.indexrelid), pg_get_indexdef(s.indexrelid)
            FROM pg_stat_user_indexes s
            JOIN pg_index i ON i.indexrelid = s.indexrelid
            WHERE s.idx_scan = 0
              AND NOT i.indisunique
              AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
            ORDER BY 4 DESC, 1, 2, 3
            """,
            r => new UnusedIndex(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetString(4)),
            cancellationToken);

        var duplicates = await CatalogQuery.ListAsync(connection,
            """
            WITH btree AS (
                SELECT i.indexrelid, i.indrelid, i.indisunique, i.indisprimary, i.indisvalid,
                       (string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts] AS columns,
                       (string_to_array(i.indclass::text, ' ')::oid[])[1:i.indnkeyatts] AS opclasses,
                       pg_get_expr(i.indpred, i.indrelid) AS predicate
                FROM pg_index i
                JOIN pg_class ic ON ic.oid = i.indexrelid
                JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
                JOIN pg_namespace n ON n.oid = ic.relnamespace
                WHERE i.indexprs IS NULL
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg\_toast%'
            )
            SELECT DISTINCT ON (a.indexrelid)
                   n.nspname, t.relname, ac.relname, pg_relation_size(a.indexrelid), pg_get_indexdef(a.indexrelid),
                   bc.relname, pg_get_indexdef(b.indexrelid)
            FROM btree a
            JOIN btree b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
            JOIN pg_class ac ON ac.oid = a.indexrelid
            JOIN pg_class bc ON bc.oid = b.indexrelid
            JOIN pg_class t ON t.oid = a.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE NOT a.indisunique AND NOT a.indisprimary AND a.indisvalid AND b.indisvalid
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = a.indexrelid)
              AND a.predicate IS NOT DISTINCT FROM b.predicate
              AND cardinality(a.columns) <= cardinality(b.columns)
              AND b.columns[1:cardinality(a.columns)] = a.columns
              AND b.opclasses[1:cardinality(a.opclasses)] = a.opclasses
              -- Two identical plain indexes: report only the newer one.
              AND NOT (a.columns = b.columns AND NOT b.indisunique AND NOT b.indisprimary AND a.indexrelid < b.indexrelid)
            ORDER BY a.indexrelid, b.indisprimary DESC, b.indisunique DESC, cardinality(b.columns), bc.relname
            """,
            r => new DuplicateIndex(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetString(4),
                r.GetString(5), r.GetString(6)),
            cancellationToken);

        var statisticsSince = (await CatalogQuery.ListAsync(connection,
            "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()",
            r => r.NullableTimestamp(0), cancellationToken)).FirstOrDefault();

        return new IndexReport(unused,
            duplicates.OrderByDescending(d => d.Bytes).ThenBy(d => d.Schema).ThenBy(d => d.Table).ThenBy(d => d.Index).ToList(),
            statisticsSince);
    }
}
