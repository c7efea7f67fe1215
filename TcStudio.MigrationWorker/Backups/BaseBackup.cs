using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Npgsql;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>
/// What <c>backup --base</c> wrote beside each base backup directory (<c>base/&lt;name&gt;.json</c>): the server's clock
/// before and after (a point-in-time recovery uses the newest one finished before its target), and the first WAL
/// segment it needs (archived WAL before the oldest kept base backup's is removed).
/// </summary>
public sealed record BaseBackupManifest
{
    public const string CurrentFormat = "tcstudio-base-backup/1";

    public string Format { get; init; } = CurrentFormat;
    public required string Name { get; init; }
    public required string Server { get; init; }
    public required string ServerVersion { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required DateTimeOffset FinishedAt { get; init; }
    public required string StartWalFile { get; init; }
    public required int Timeline { get; init; }
    public required long SizeBytes { get; init; }
    public required bool Verified { get; init; }
    public string? ArchiveMode { get; init; }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static string PathFor(string baseDirectory, string name) => Path.Combine(baseDirectory, name + ".json");

    public async Task WriteAsync(string baseDirectory, CancellationToken cancellationToken)
    {
        var path = PathFor(baseDirectory, Name);
        await File.WriteAllTextAsync(path + ".partial", JsonSerializer.Serialize(this, JsonOptions) + "\n", cancellationToken);
        File.Move(path + ".partial", path, overwrite: true);
    }

    /// <summary>The base backups whose directory and manifest are both there, oldest first.</summary>
    public static IReadOnlyList<BaseBackupManifest> List(string baseDirectory)
    {
        if (!Directory.Exists(baseDirectory)) return [];
        var found = new List<BaseBackupManifest>();
        foreach (var path in Directory.GetFiles(baseDirectory, "*.json"))
        {
            try
            {
                var manifest = JsonSerializer.Deserialize<BaseBackupManifest>(File.ReadAllText(path), JsonOptions);
                if (manifest?.Format == CurrentFormat && Directory.Exists(Path.Combine(baseDirectory, manifest.Name))) found.Add(manifest);
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                // Not ours or damaged: left alone.
            }
        }
        return found.OrderBy(m => m.FinishedAt).ToList();
    }
}

public sealed record BaseBackupResult(BaseBackupManifest Manifest, TimeSpan Duration, int Kept, int Removed, int WalRemoved);

/// <summary>
/// <c>backup --base</c>: a physical copy of the whole server with <c>pg_basebackup</c> (plain format, fast checkpoint,
/// the WAL it needs streamed in, so it is consistent on its own), checked with <c>pg_verifybackup</c>, written under a
/// temporary name and renamed when good. Then only the newest <c>Backup:KeepBaseBackups</c> are kept, and archived WAL
/// older than the oldest kept one is removed (<c>pg_archivecleanup</c>), so the archive cannot grow for ever. Needs a
/// role with the REPLICATION attribute and a pg_hba.conf entry for replication connections.
/// </summary>
public sealed partial class BaseBackup(PostgresTools tools, BackupOptions options, TextWriter output)
{
    public async Task<BaseBackupResult> RunAsync(NpgsqlConnectionStringBuilder server, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var (toolMajor, _) = await tools.VersionAsync("pg_basebackup", cancellationToken);
        var connectionString = new NpgsqlConnectionStringBuilder(server.ConnectionString) { Pooling = false, ApplicationName = "tcstudio-backup" };
        int serverMajor;
        string serverVersion, archiveMode;
        DateTimeOffset startedAt;
        await using (var connection = new NpgsqlConnection(connectionString.ConnectionString))
        {
            await connection.OpenAsync(cancellationToken);
            await using var command = new NpgsqlCommand(
                "SELECT current_setting('server_version_num')::int / 10000, current_setting('server_version'), "
                    + "current_setting('archive_mode'), now()",
                connection);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            (serverMajor, serverVersion, archiveMode, startedAt) = (reader.GetInt32(0), reader.GetString(1), reader.GetString(2),
                reader.GetFieldValue<DateTimeOffset>(3));
        }
        if (toolMajor < serverMajor)
        {
            throw new BackupException($"the local pg_basebackup is version {toolMajor} but the server runs PostgreSQL {serverMajor}; "
                + $"install postgresql-client-{serverMajor} or point Backup:PostgresBin at its bin directory.");
        }

        PostgresTools.CreatePrivateDirectory(options.ResolvedDirectory);
        PostgresTools.CreatePrivateDirectory(options.BaseDirectory);
        var name = startedAt.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        for (var n = 2; Directory.Exists(Path.Combine(options.BaseDirectory, name)); n++) name = $"{name.Split('-')[0]}-{n}";
        var finalPath = Path.Combine(options.BaseDirectory, name);
        var temporaryPath = Path.Combine(options.BaseDirectory, "." + name + ".partial");
        try
        {
            using var password = PasswordFile.For(connectionString);
            var lastTenth = -1;
            PostgresTools.EnsureSuccess(await tools.RunAsync("pg_basebackup",
                [
                    "--pgdata", temporaryPath, "--format=plain", "--wal-method=stream", "--checkpoint=fast", "--progress",
                    "--no-password", $"--dbname={Libpq.ConnectionString(connectionString)}",
                ],
                password,
                line =>
                {
                    // "12345/67890 kB (18%), 0/1 tablespace": every tenth.
                    if (ProgressPattern().Match(line) is { Success: true } match && int.Parse(match.Groups[1].Value) / 10 is var tenth
                        && tenth > lastTenth)
                    {
                        lastTenth = tenth;
                        output.WriteLine($"    pg_basebackup: {line.Trim()}");
                    }
                },
                cancellationToken), "pg_basebackup");

            PostgresTools.EnsureSuccess(await tools.RunAsync("pg_verifybackup", [temporaryPath], null, null, cancellationToken), "pg_verifybackup");
            output.WriteLine("    pg_verifybackup: every file matches the backup manifest, and the WAL it needs is there and readable");

            var (startWal, timeline) = ReadBackupLabel(temporaryPath);
            DateTimeOffset finishedAt;
            await using (var connection = new NpgsqlConnection(connectionString.ConnectionString))
            {
                await connection.OpenAsync(cancellationToken);
                await using var now = new NpgsqlCommand("SELECT now()", connection);
                finishedAt = new DateTimeOffset((DateTime)(await now.ExecuteScalarAsync(cancellationToken))!, TimeSpan.Zero);
            }
            var size = new DirectoryInfo(temporaryPath).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
            Directory.Move(temporaryPath, finalPath);
            var manifest = new BaseBackupManifest
            {
                Name = name,
                Server = $"{connectionString.Host}:{connectionString.Port}",
                ServerVersion = serverVersion,
                StartedAt = startedAt.ToUniversalTime(),
                FinishedAt = finishedAt.ToUniversalTime(),
                StartWalFile = startWal,
                Timeline = timeline,
                SizeBytes = size,
                Verified = true,
                ArchiveMode = archiveMode,
            };
            await manifest.WriteAsync(options.BaseDirectory, cancellationToken);
            var (kept, removed, walRemoved) = await PruneAsync(cancellationToken);
            return new BaseBackupResult(manifest, stopwatch.Elapsed, kept, removed, walRemoved);
        }
        finally
        {
            if (Directory.Exists(temporaryPath)) Directory.Delete(temporaryPath, recursive: true);
        }
    }

    /// <summary>Keeps the newest KeepBaseBackups; then the archived WAL the oldest kept one does not need goes.</summary>
    private async Task<(int Kept, int Removed, int WalRemoved)> PruneAsync(CancellationToken cancellationToken)
    {
        var all = BaseBackupManifest.List(options.BaseDirectory);
        var remove = all.Take(Math.Max(0, all.Count - options.KeepBaseBackups)).ToList();
        foreach (var old in remove)
        {
            Directory.Delete(Path.Combine(options.BaseDirectory, old.Name), recursive: true);
            File.Delete(BaseBackupManifest.PathFor(options.BaseDirectory, old.Name));
            output.WriteLine($"    removed base backup {old.Name} (retention: keep the last {options.KeepBaseBackups})");
        }
        var oldestKept = all.Skip(remove.Count).FirstOrDefault();
        var walRemoved = 0;
        if (oldestKept is not null && options.WalArchive is { Length: > 0 } archive && Directory.Exists(archive))
        {
            var before = Directory.GetFiles(archive).Length;
            PostgresTools.EnsureSuccess(await tools.RunAsync("pg_archivecleanup", [archive, oldestKept.StartWalFile], null, null, cancellationToken),
                "pg_archivecleanup");
            walRemoved = before - Directory.GetFiles(archive).Length;
        }
        return (all.Count - remove.Count, remove.Count, walRemoved);
    }

    /// <summary>backup_label: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)" and "START TIMELINE: 1".</summary>
    private static (string StartWal, int Timeline) ReadBackupLabel(string dataDirectory)
    {
        var label = File.ReadAllText(Path.Combine(dataDirectory, "backup_label"));
        var wal = StartWalPattern().Match(label);
        var timeline = TimelinePattern().Match(label);
        if (!wal.Success || !timeline.Success) throw new BackupException("the base backup's backup_label does not say where its WAL starts.");
        return (wal.Groups[1].Value, int.Parse(timeline.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"\((\d+)%\)")]
    private static partial Regex ProgressPattern();

    [GeneratedRegex(@"START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)")]
    private static partial Regex StartWalPattern();

    [GeneratedRegex(@"START TIMELINE: (\d+)")]
    private static partial Regex TimelinePattern();
}
