using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.SqlClient;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>
/// Every T-SQL text the SQL Server backup sends, in one place, so a unit test can parse each with ScriptDom (no SQL
/// Server runs on the build machines). The database name and the path travel as parameters: BACKUP and RESTORE
/// accept variables for both.
/// </summary>
public static class SqlServerBackupSql
{
    /// <summary>A full, compressed backup whose pages are checksummed as they are read (a damaged page fails it).</summary>
    public const string BackupDatabase =
        "BACKUP DATABASE @database TO DISK = @path WITH CHECKSUM, COMPRESSION, FORMAT, INIT, NAME = @name, STATS = 10;";

    /// <summary>Reads the whole backup back and checks its checksums, without restoring it.</summary>
    public const string VerifyBackup = "RESTORE VERIFYONLY FROM DISK = @path WITH CHECKSUM;";

    /// <summary>What msdb recorded about the backup just written to @path.</summary>
    public const string BackupFacts = """
        SELECT TOP (1) bs.backup_size, bs.compressed_backup_size, bs.has_backup_checksums, bs.backup_start_date, bs.backup_finish_date
        FROM msdb.dbo.backupset AS bs
        JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id
        WHERE bs.database_name = @database AND mf.physical_device_name = @path
        ORDER BY bs.backup_set_id DESC;
        """;

    public const string ServerVersion = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128));";

    /// <summary>A path on the SQL Server host: the directory's own separator (a Windows or a Linux host).</summary>
    public static string RemotePath(string directory, string fileName)
    {
        var separator = directory.Contains('\\') ? '\\' : '/';
        return directory.TrimEnd('\\', '/') + separator + fileName;
    }
}

/// <summary>
/// Backs up one SQL Server workspace database on its own server: BACKUP DATABASE ... WITH CHECKSUM, COMPRESSION to
/// <c>Backup:SqlServerDirectory</c> (a path on the SQL Server host), then RESTORE VERIFYONLY. A manifest (kind
/// <c>sqlserver</c>, the remote path, sizes from msdb) is written locally beside the PostgreSQL backups.
/// </summary>
public sealed class SqlServerBackup(BackupOptions options, TextWriter output, TimeProvider clock)
{
    public async Task<BackupResult> RunAsync(WorkspaceServer server, string database, string outputDirectory, string workspace, string environment,
        CancellationToken cancellationToken)
    {
        if (options.SqlServerDirectory is not { Length: > 0 } remoteDirectory)
        {
            throw new BackupConfigurationException("Backup:SqlServerDirectory is not set: BACKUP DATABASE needs a directory on the SQL "
                + "Server host to write to.");
        }
        var stopwatch = Stopwatch.StartNew();
        var startedAt = clock.GetUtcNow();
        var fileName = $"{database}-{startedAt.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)}.bak";
        var remotePath = SqlServerBackupSql.RemotePath(remoteDirectory, fileName);

        var connectionString = new SqlConnectionStringBuilder(server.ConnectionString)
        {
            InitialCatalog = "master",
            Pooling = false,
            ApplicationName = "tcstudio-backup",
        };
        await using var connection = new SqlConnection(connectionString.ConnectionString);
        // STATS = 10 reports progress as informational messages ("10 percent processed.").
        connection.InfoMessage += (_, e) => output.WriteLine($"    {e.Message.ReplaceLineEndings(" ")}");
        await connection.OpenAsync(cancellationToken);

        string version;
        await using (var command = new SqlCommand(SqlServerBackupSql.ServerVersion, connection))
        {
            version = (string)(await command.ExecuteScalarAsync(cancellationToken))!;
        }
        await using (var backup = new SqlCommand(SqlServerBackupSql.BackupDatabase, connection) { CommandTimeout = 0 })
        {
            backup.Parameters.AddWithValue("@database", database);
            backup.Parameters.AddWithValue("@path", remotePath);
            backup.Parameters.AddWithValue("@name", $"tcstudio {database} {startedAt.UtcDateTime:O}");
            await backup.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var verify = new SqlCommand(SqlServerBackupSql.VerifyBackup, connection) { CommandTimeout = 0 })
        {
            verify.Parameters.AddWithValue("@path", remotePath);
            await verify.ExecuteNonQueryAsync(cancellationToken);
        }
        long size = 0, databaseBytes = 0;
        await using (var facts = new SqlCommand(SqlServerBackupSql.BackupFacts, connection))
        {
            facts.Parameters.AddWithValue("@database", database);
            facts.Parameters.AddWithValue("@path", remotePath);
            await using var reader = await facts.ExecuteReaderAsync(cancellationToken);
            if (await reader.ReadAsync(cancellationToken))
            {
                databaseBytes = Convert.ToInt64(reader.GetValue(0), CultureInfo.InvariantCulture);
                size = reader.IsDBNull(1) ? databaseBytes : Convert.ToInt64(reader.GetValue(1), CultureInfo.InvariantCulture);
            }
        }

        var manifest = new BackupManifest
        {
            Kind = BackupKinds.SqlServer,
            Database = database,
            Server = connectionString.DataSource,
            WorkspaceServer = server.Name,
            Workspace = workspace,
            Environment = environment,
            StartedAt = startedAt,
            FinishedAt = clock.GetUtcNow(),
            ServerVersion = $"SQL Server {version}",
            File = remotePath,
            SizeBytes = size,
            Compression = "sqlserver",
        };
        PostgresTools.CreatePrivateDirectory(options.ResolvedDirectory);
        PostgresTools.CreatePrivateDirectory(Path.GetDirectoryName(outputDirectory)!);
        PostgresTools.CreatePrivateDirectory(outputDirectory);
        var localName = Path.Combine(outputDirectory, fileName);
        await manifest.WriteAsync(localName, cancellationToken);
        output.WriteLine($"    RESTORE VERIFYONLY: the backup set on {remotePath} is valid");
        return new BackupResult(localName, manifest, databaseBytes, stopwatch.Elapsed, Kept: 1, Removed: 0);
    }
}
