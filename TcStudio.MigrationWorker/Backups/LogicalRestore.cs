using System.Data;
using System.Text.RegularExpressions;
using Npgsql;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>What a restore found: the restored tables and every difference from the manifest (none: it matches).</summary>
public sealed record RestoreCheck(IReadOnlyList<TableContent> Restored, IReadOnlyList<string> Differences)
{
    public bool Matches => Differences.Count == 0;
}

/// <summary>
/// Restores a logical backup into a database created for it (never into an existing one) and checks it against its
/// manifest: the file's SHA-256 before anything is restored, then every table's row count and content checksum.
/// </summary>
public sealed partial class LogicalRestore(PostgresTools tools, BackupOptions options, TextWriter output)
{
    /// <summary>Reads the manifest and checks the file against it; a mismatch is corruption and nothing is restored.</summary>
    public static async Task<BackupManifest> CheckFileAsync(string file, TextWriter output, CancellationToken cancellationToken)
    {
        if (!File.Exists(file)) throw new BackupUsageException($"{file} does not exist.");
        var manifest = await BackupManifest.ReadAsync(file, cancellationToken);
        if (manifest.Kind == BackupKinds.SqlServer)
        {
            throw new BackupUsageException($"{Path.GetFileName(file)} describes a SQL Server backup ({manifest.File} on the SQL Server host): "
                + "restore it there with RESTORE DATABASE ... FROM DISK = N'<that path>' WITH CHECKSUM.");
        }
        var size = new FileInfo(file).Length;
        var sha256 = await BackupManifest.Sha256Async(file, cancellationToken);
        if (sha256 != manifest.Sha256 || size != manifest.SizeBytes)
        {
            throw new BackupCorruptException($"{Path.GetFileName(file)} is corrupt: its SHA-256 is {sha256[..16]}… ({size:#,0} bytes) but the "
                + $"manifest says {manifest.Sha256?[..Math.Min(16, manifest.Sha256.Length)]}… ({manifest.SizeBytes:#,0} "
                + "bytes); nothing was restored.");
        }
        output.WriteLine($"  {Path.GetFileName(file)}: {manifest.Database} ({manifest.Kind}), taken "
            + $"{manifest.SnapshotAt?.UtcDateTime ?? manifest.StartedAt.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z "
            + $"from PostgreSQL {manifest.ServerVersion.Split(' ')[0]}, schema {manifest.SchemaVersion ?? "(none)"}; SHA-256 matches the manifest");
        return manifest;
    }

    /// <summary>
    /// Creates <paramref name="database"/> on the server of <paramref name="server"/>, restores the file into it and
    /// checks it. If pg_restore fails the new database is dropped again; if the check finds differences it is kept.
    /// </summary>
    public async Task<RestoreCheck> RestoreAsync(string file, BackupManifest manifest, NpgsqlConnectionStringBuilder server, string database,
        CancellationToken cancellationToken)
    {
        await CreateDatabaseAsync(server, database, manifest, cancellationToken);
        var target = new NpgsqlConnectionStringBuilder(server.ConnectionString) { Database = database, Pooling = false, CommandTimeout = 0 };
        try
        {
            using var password = PasswordFile.For(target);
            var result = await tools.RunAsync("pg_restore",
                [
                    "--exit-on-error", "--verbose", "--no-password", $"--jobs={options.RestoreJobs}",
                    $"--dbname={Libpq.ConnectionString(target)}", file,
                ],
                password,
                line =>
                {
                    if (RestoringTablePattern().Match(line) is { Success: true } match)
                    {
                        output.WriteLine($"    pg_restore: restoring {match.Groups[1].Value}");
                    }
                },
                cancellationToken);
            PostgresTools.EnsureSuccess(result, "pg_restore");
        }
        catch
        {
            await DropDatabaseAsync(server, database, CancellationToken.None);
            throw;
        }
        return await CheckAsync(target, manifest, cancellationToken);
    }

    /// <summary>Counts and checksums every table of the restored database and compares them with the manifest.</summary>
    public async Task<RestoreCheck> CheckAsync(NpgsqlConnectionStringBuilder database, BackupManifest manifest, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);
        await TableChecksums.ApplySessionSettingsAsync(connection, transaction, cancellationToken);
        var restored = new List<TableContent>();
        var expected = manifest.Tables.ToDictionary(t => t.Table, StringComparer.Ordinal);
        foreach (var table in await TableChecksums.ListTablesAsync(connection, transaction, cancellationToken))
        {
            var content = await TableChecksums.ComputeAsync(connection, table, cancellationToken);
            restored.Add(content);
            var verdict = !expected.TryGetValue(content.Table, out var want) ? "not in the manifest"
                : want.Rows != content.Rows ? $"DIFFERENT: {want.Rows:#,0} in the manifest"
                : want.Checksum != content.Checksum ? "DIFFERENT: checksum"
                : "matches";
            output.WriteLine($"    {content.Table}: {content.Rows:#,0} rows, {verdict}");
        }
        await transaction.CommitAsync(cancellationToken);
        return new RestoreCheck(restored, TableChecksums.Compare(manifest.Tables, restored));
    }

    public static async Task<bool> DatabaseExistsAsync(NpgsqlConnectionStringBuilder server, string database, CancellationToken cancellationToken)
    {
        await using var connection = await OpenMaintenanceAsync(server, cancellationToken);
        await using var command = new NpgsqlCommand("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = @name)", connection);
        command.Parameters.AddWithValue("name", database);
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public static async Task DropDatabaseAsync(NpgsqlConnectionStringBuilder server, string database, CancellationToken cancellationToken)
    {
        await using var connection = await OpenMaintenanceAsync(server, cancellationToken);
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Quote(database)} WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Development's restore over a live database: the live one goes, the checked copy takes its name.</summary>
    public static async Task ReplaceAsync(NpgsqlConnectionStringBuilder server, string live, string restored, CancellationToken cancellationToken)
    {
        await using var connection = await OpenMaintenanceAsync(server, cancellationToken);
        await using (var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Quote(live)} WITH (FORCE)", connection))
        {
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }
        await using var rename = new NpgsqlCommand($"ALTER DATABASE {Quote(restored)} RENAME TO {Quote(live)}", connection);
        await rename.ExecuteNonQueryAsync(cancellationToken);
    }

    private async Task CreateDatabaseAsync(NpgsqlConnectionStringBuilder server, string database, BackupManifest manifest,
        CancellationToken cancellationToken)
    {
        await using var connection = await OpenMaintenanceAsync(server, cancellationToken);
        // template0: nothing a server added to template1 can collide with the dump. Same encoding and locale as the source.
        var settings = "";
        if (IsPlain(manifest.Encoding)) settings += $" ENCODING '{manifest.Encoding}'";
        if (IsPlain(manifest.Collate) && IsPlain(manifest.Ctype)) settings += $" LC_COLLATE '{manifest.Collate}' LC_CTYPE '{manifest.Ctype}'";
        try
        {
            await using var create = new NpgsqlCommand($"CREATE DATABASE {Quote(database)} TEMPLATE template0{settings}", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidParameterValue && settings.Length > 0)
        {
            // The source's locale does not exist here: the server's defaults, said out loud.
            output.WriteLine($"    note: {e.MessageText}; creating {database} with this server's default encoding and locale");
            await using var create = new NpgsqlCommand($"CREATE DATABASE {Quote(database)} TEMPLATE template0", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
        NpgsqlConnection.ClearAllPools();
    }

    private static async Task<NpgsqlConnection> OpenMaintenanceAsync(NpgsqlConnectionStringBuilder server, CancellationToken cancellationToken)
    {
        var maintenance = new NpgsqlConnectionStringBuilder(server.ConnectionString)
        {
            Database = "postgres",
            Pooling = false,
            ApplicationName = "tcstudio-restore",
            CommandTimeout = 0, // CREATE and DROP DATABASE wait for a checkpoint
        };
        var connection = new NpgsqlConnection(maintenance.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";

    private static bool IsPlain(string? value) => value is { Length: > 0 } && PlainSetting().IsMatch(value);

    [GeneratedRegex("^[A-Za-z0-9_.@-]+$")]
    private static partial Regex PlainSetting();

    [GeneratedRegex("processing data for table \"(.+)\"")]
    private static partial Regex RestoringTablePattern();
}

/// <summary>The file does not match its manifest: exit 1, nothing restored.</summary>
public sealed class BackupCorruptException(string message) : BackupException(message);

/// <summary>A request the verb refuses (bad target, missing file): exit 2.</summary>
public sealed class BackupUsageException(string message) : BackupException(message);
