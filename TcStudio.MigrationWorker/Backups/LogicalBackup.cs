using System.Data;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>Which PostgreSQL database to back up, with which credential, into which directory.</summary>
public sealed record BackupSource(string Kind, NpgsqlConnectionStringBuilder Connection, string OutputDirectory,
    string? WorkspaceServer = null, string? Workspace = null, string? Environment = null)
{
    public string Database => Connection.Database!;
}

public sealed record BackupResult(string File, BackupManifest Manifest, long DatabaseBytes, TimeSpan Duration, int Kept, int Removed);

/// <summary>
/// A logical backup of one PostgreSQL database: <c>pg_dump</c> (custom format, compressed) reading a snapshot that
/// this class exported with <c>pg_export_snapshot()</c> and holds open while it counts and checksums every table in
/// the same snapshot, so the manifest describes exactly what the dump holds even while others write. The dump is
/// written under a temporary name and renamed only when complete; retention runs only after that.
/// </summary>
public sealed partial class LogicalBackup(PostgresTools tools, BackupOptions options, TextWriter output, TimeProvider clock)
{
    public async Task<BackupResult> RunAsync(BackupSource source, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var startedAt = clock.GetUtcNow();
        PostgresTools.CreatePrivateDirectory(source.OutputDirectory);
        var (toolMajor, toolLine) = await tools.VersionAsync("pg_dump", cancellationToken);

        var connectionString = new NpgsqlConnectionStringBuilder(source.Connection.ConnectionString)
        {
            Pooling = false,
            ApplicationName = "tcstudio-backup",
            CommandTimeout = 0, // a checksum pass over a large table may take minutes
        };
        await using var connection = new NpgsqlConnection(connectionString.ConnectionString);
        await connection.OpenAsync(cancellationToken);

        var server = await ReadServerAsync(connection, cancellationToken);
        if (toolMajor < server.Major)
        {
            throw new BackupException($"the local pg_dump is version {toolMajor} ({tools.PathOf("pg_dump")}) but the server runs "
                + $"PostgreSQL {server.Major}: pg_dump must be at least the server's major version. Install postgresql-client-{server.Major} "
                + "or point Backup:PostgresBin at its bin directory.");
        }

        // One snapshot for pg_dump and for the counts and checksums: the transaction stays open until both are done.
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);
        await using (var readOnly = new NpgsqlCommand("SET TRANSACTION READ ONLY", connection, transaction))
        {
            await readOnly.ExecuteNonQueryAsync(cancellationToken);
        }
        await TableChecksums.ApplySessionSettingsAsync(connection, transaction, cancellationToken);
        string snapshot;
        DateTimeOffset snapshotAt;
        string role;
        await using (var export = new NpgsqlCommand("SELECT pg_export_snapshot(), now(), current_user::text", connection, transaction))
        await using (var reader = await export.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            snapshot = reader.GetString(0);
            snapshotAt = reader.GetFieldValue<DateTimeOffset>(1);
            role = reader.GetString(2);
        }
        var schemaVersion = await ReadSchemaVersionAsync(connection, transaction, source.Kind, cancellationToken);
        var tables = await TableChecksums.ListTablesAsync(connection, transaction, cancellationToken);
        if (await TableChecksums.ListTablesHidingRowsAsync(connection, transaction, cancellationToken) is [_, ..] hidden)
        {
            throw new BackupException($"{role} is subject to row-level security on {string.Join(", ", hidden)}: a backup would "
                + "silently miss rows. Back up as a role with BYPASSRLS (the backup role; docs/security.md).");
        }

        var name = UniqueName(source.OutputDirectory, source.Database, startedAt);
        var finalPath = Path.Combine(source.OutputDirectory, name);
        var temporaryPath = Path.Combine(source.OutputDirectory, "." + name + ".partial");
        output.WriteLine($"  {source.Database}: {tables.Count} tables, snapshot {snapshot} at "
            + $"{snapshotAt.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z, as {role}");

        using var password = PasswordFile.For(connectionString);
        try
        {
            using var dumpCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var dump = tools.RunAsync("pg_dump",
                [
                    "--format=custom", $"--compress={options.CompressionLevel}", $"--snapshot={snapshot}", "--verbose",
                    "--no-password", $"--file={temporaryPath}", $"--dbname={Libpq.ConnectionString(connectionString)}",
                ],
                password,
                line =>
                {
                    if (DumpingTablePattern().Match(line) is { Success: true } match)
                    {
                        output.WriteLine($"    pg_dump: dumping {match.Groups[1].Value}");
                    }
                },
                dumpCancellation.Token);

            // The checksum pass runs beside pg_dump; whichever fails first stops the other.
            using var checksumCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var contents = new List<TableContent>();
            var checksums = Task.Run(async () =>
            {
                foreach (var table in tables)
                {
                    var content = await TableChecksums.ComputeAsync(connection, table, checksumCancellation.Token);
                    contents.Add(content);
                    output.WriteLine($"    {content.Table}: {content.Rows:#,0} rows, checksum {content.Checksum[..12]}");
                }
            }, checksumCancellation.Token);
            if (await Task.WhenAny(dump, checksums) == dump && !(dump.IsCompletedSuccessfully && dump.Result.ExitCode == 0))
            {
                await checksumCancellation.CancelAsync();
                await Task.WhenAny(checksums); // its cancellation is expected; pg_dump's reason is the one to report
                PostgresTools.EnsureSuccess(await dump, "pg_dump");
            }
            try
            {
                await checksums;
            }
            catch
            {
                await dumpCancellation.CancelAsync();
                await Task.WhenAny(dump); // stopped on purpose: the checksum pass's reason is the one to report
                throw;
            }
            PostgresTools.EnsureSuccess(await dump, "pg_dump");
            await transaction.CommitAsync(cancellationToken);

            PostgresTools.MakePrivate(temporaryPath);
            var sha256 = await BackupManifest.Sha256Async(temporaryPath, cancellationToken);
            var size = new FileInfo(temporaryPath).Length;
            var manifest = new BackupManifest
            {
                Kind = source.Kind,
                Database = source.Database,
                Server = $"{connectionString.Host}:{connectionString.Port}",
                WorkspaceServer = source.WorkspaceServer,
                Workspace = source.Workspace,
                Environment = source.Environment,
                StartedAt = startedAt,
                FinishedAt = clock.GetUtcNow(),
                SnapshotAt = snapshotAt.ToUniversalTime(),
                ServerVersion = server.Version,
                DumpToolVersion = toolLine,
                SchemaVersion = schemaVersion,
                Role = role,
                Encoding = server.Encoding,
                Collate = server.Collate,
                Ctype = server.Ctype,
                File = name,
                SizeBytes = size,
                Sha256 = sha256,
                Compression = options.CompressionLevel == 0 ? "none" : $"gzip:{options.CompressionLevel}",
                ChecksumDefinition = TableChecksums.Definition,
                Tables = contents,
            };
            File.Move(temporaryPath, finalPath);
            await manifest.WriteAsync(finalPath, cancellationToken);

            var (kept, removed) = BackupRetention.Apply(source.OutputDirectory, manifest, finalPath, options, clock.GetUtcNow(), output);
            return new BackupResult(finalPath, manifest, server.DatabaseBytes, stopwatch.Elapsed, kept, removed);
        }
        finally
        {
            // A failed or partial dump never takes a good backup's place: its temporary file just goes.
            if (File.Exists(temporaryPath)) File.Delete(temporaryPath);
        }
    }

    private sealed record ServerFacts(int Major, string Version, string Encoding, string Collate, string Ctype, long DatabaseBytes);

    private static async Task<ServerFacts> ReadServerAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("""
            SELECT current_setting('server_version_num')::int / 10000, current_setting('server_version'),
                   pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, pg_database_size(d.oid)
              FROM pg_database d WHERE d.datname = current_database()
            """, connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new ServerFacts(reader.GetInt32(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4),
            reader.GetInt64(5));
    }

    /// <summary>The system database's last applied migration, or a workspace database's base-schema version.</summary>
    public static async Task<string?> ReadSchemaVersionAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string kind,
        CancellationToken cancellationToken)
    {
        var (table, query) = kind == BackupKinds.System
            ? ("migrations", "SELECT max(migration_id)::text FROM migrations")
            : ("tcstudio.tcstudio_schema_migrations", "SELECT max(version)::text FROM tcstudio.tcstudio_schema_migrations");
        await using (var exists = new NpgsqlCommand("SELECT to_regclass(@table) IS NOT NULL", connection, transaction))
        {
            exists.Parameters.AddWithValue("table", table);
            if (!(bool)(await exists.ExecuteScalarAsync(cancellationToken))!) return null;
        }
        await using var command = new NpgsqlCommand(query, connection, transaction);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <summary><c>&lt;database&gt;-&lt;UTC time&gt;.dump</c>, with -2, -3... when two backups start in the same second.</summary>
    private static string UniqueName(string directory, string database, DateTimeOffset at)
    {
        var stem = $"{database}-{at.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)}";
        var name = stem + ".dump";
        for (var n = 2; File.Exists(Path.Combine(directory, name)); n++) name = $"{stem}-{n}.dump";
        return name;
    }

    [GeneratedRegex("dumping contents of table \"(.+)\"")]
    private static partial Regex DumpingTablePattern();
}

public static class BackupKinds
{
    public const string System = "system";
    public const string Workspace = "workspace";
    public const string SqlServer = "sqlserver";
}
