using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>A table as the checksum pass reads it.</summary>
/// <param name="IsPartitioned">A partitioned table: read whole (its partitions are not listed on their own).</param>
public sealed record TableToCheck(string Name, string QualifiedSql, IReadOnlyList<string> OrderByColumns, string OrderBySql,
    bool IsPartitioned = false);

/// <summary>
/// Row counts and content checksums of every table of a database, read in the caller's transaction (for a backup,
/// the very snapshot pg_dump reads). The definition, so anyone can recompute a checksum by hand:
/// <para>
/// the SHA-256 (lower-case hex) of the bytes of <c>COPY (SELECT * FROM ONLY &lt;table&gt; ORDER BY &lt;primary key
/// columns&gt;) TO STDOUT</c> (text format, UTF-8) with <c>TimeZone=UTC</c>, <c>DateStyle='ISO, YMD'</c>,
/// <c>IntervalStyle=postgres</c>, <c>extra_float_digits=1</c> and <c>bytea_output=hex</c>; text-like key columns are
/// compared with <c>COLLATE "C"</c> (so the order does not depend on the server's locale); a table without a primary
/// key is ordered by its whole row as text (<c>ORDER BY t::text COLLATE "C"</c>). The row count is the number of
/// lines. Tables: every ordinary table outside pg_catalog, information_schema and extensions; a partitioned table
/// counts as one table, read whole (<c>SELECT * FROM &lt;table&gt;</c>, without ONLY), and its partitions are not listed.
/// </para>
/// </summary>
public static class TableChecksums
{
    public const string Definition =
        "sha256 (hex) of COPY (SELECT * FROM ONLY <table> ORDER BY <primary key columns; text-like ones COLLATE \"C\">) TO STDOUT "
        + "(text format, UTF-8) with TimeZone=UTC, DateStyle='ISO, YMD', IntervalStyle=postgres, extra_float_digits=1, "
        + "bytea_output=hex; tables without a primary key ORDER BY t::text COLLATE \"C\"; a partitioned table without ONLY (its partitions "
        + "not listed); rows = lines";

    /// <summary>The settings the definition fixes, for the current transaction only.</summary>
    public const string SessionSettings = """
        SET LOCAL TimeZone = 'UTC';
        SET LOCAL DateStyle = 'ISO, YMD';
        SET LOCAL IntervalStyle = 'postgres';
        SET LOCAL extra_float_digits = 1;
        SET LOCAL bytea_output = 'hex';
        SET LOCAL row_security = off;
        """;

    // row_security = off: a role subject to row-level security gets an error instead of silently fewer rows.
    private const string ListTablesSql = """
        SELECT n.nspname, c.relname,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
               c.relkind = 'p' AS partitioned,
               (SELECT array_agg(a.attname::text ORDER BY k.ord)
                  FROM pg_index i
                  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary) AS key_columns,
               (SELECT string_agg(quote_ident(a.attname) || CASE WHEN a.attcollation <> 0 THEN ' COLLATE "C"' ELSE '' END, ', ' ORDER BY k.ord)
                  FROM pg_index i
                  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary) AS key_sql
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND c.relpersistence <> 't'
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\_toast%'
           AND n.nspname NOT LIKE 'pg\_temp%'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY n.nspname, c.relname
        """;

    public static async Task ApplySessionSettingsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SessionSettings, connection, transaction);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public static async Task<IReadOnlyList<TableToCheck>> ListTablesAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(ListTablesSql, connection, transaction);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tables = new List<TableToCheck>();
        while (await reader.ReadAsync(cancellationToken))
        {
            var name = $"{reader.GetString(0)}.{reader.GetString(1)}";
            var qualified = reader.GetString(2);
            var partitioned = reader.GetBoolean(3);
            if (reader.IsDBNull(4))
            {
                tables.Add(new TableToCheck(name, qualified, [], "t::text COLLATE \"C\"", partitioned));
            }
            else
            {
                tables.Add(new TableToCheck(name, qualified, reader.GetFieldValue<string[]>(4), reader.GetString(5), partitioned));
            }
        }
        return tables;
    }

    /// <summary>
    /// The tables whose rows the current role would not all see because row-level security applies to it. Checked
    /// before pg_dump starts: a failure inside the exported snapshot's transaction would abort it under pg_dump, which
    /// would then report a snapshot error instead of the reason.
    /// </summary>
    public static async Task<IReadOnlyList<string>> ListTablesHidingRowsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("""
            SELECT n.nspname || '.' || c.relname
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND row_security_active(c.oid)
             ORDER BY 1
            """, connection, transaction);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tables = new List<string>();
        while (await reader.ReadAsync(cancellationToken))
        {
            tables.Add(reader.GetString(0));
        }
        return tables;
    }

    /// <summary>The exact COPY statement whose output is hashed (also what the README tells people to run).</summary>
    public static string CopyStatement(TableToCheck table) =>
        $"COPY (SELECT * FROM {(table.IsPartitioned ? "" : "ONLY ")}{table.QualifiedSql} AS t ORDER BY {table.OrderBySql}) TO STDOUT";

    public static async Task<TableContent> ComputeAsync(NpgsqlConnection connection, TableToCheck table, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var encoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetEncoder();
        var chars = ArrayPool<char>.Shared.Rent(1 << 16);
        var bytes = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(1 << 16) + 8);
        long rows = 0;
        try
        {
            using var export = await connection.BeginTextExportAsync(CopyStatement(table), cancellationToken);
            int read;
            while ((read = await export.ReadAsync(chars.AsMemory(0, 1 << 16), cancellationToken)) > 0)
            {
                rows += chars.AsSpan(0, read).Count('\n');
                var length = encoder.GetBytes(chars, 0, read, bytes, 0, flush: false);
                hash.AppendData(bytes, 0, length);
            }
            var tail = encoder.GetBytes(chars, 0, 0, bytes, 0, flush: true);
            hash.AppendData(bytes, 0, tail);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
            ArrayPool<byte>.Shared.Return(bytes);
        }
        return new TableContent(table.Name, rows, Convert.ToHexStringLower(hash.GetHashAndReset()), table.OrderByColumns);
    }

    /// <summary>One line per difference between what a manifest says and what a database holds; empty when they agree.</summary>
    public static IReadOnlyList<string> Compare(IReadOnlyList<TableContent> expected, IReadOnlyList<TableContent> actual)
    {
        var differences = new List<string>();
        var found = actual.ToDictionary(t => t.Table, StringComparer.Ordinal);
        foreach (var table in expected)
        {
            if (!found.Remove(table.Table, out var restored))
            {
                differences.Add($"{table.Table}: in the manifest ({table.Rows:#,0} rows), missing from the restored database");
            }
            else if (restored.Rows != table.Rows)
            {
                differences.Add($"{table.Table}: {table.Rows:#,0} rows in the manifest, {restored.Rows:#,0} restored");
            }
            else if (restored.Checksum != table.Checksum)
            {
                differences.Add($"{table.Table}: same row count ({table.Rows:#,0}) but the content checksum differs "
                    + $"(manifest {table.Checksum[..12]}…, restored {restored.Checksum[..12]}…)");
            }
        }
        foreach (var extra in found.Values.OrderBy(t => t.Table, StringComparer.Ordinal))
        {
            differences.Add($"{extra.Table}: restored ({extra.Rows:#,0} rows) but not in the manifest");
        }
        return differences;
    }
}
