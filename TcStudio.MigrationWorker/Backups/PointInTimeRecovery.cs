using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace TcStudio.MigrationWorker.Backups;

public sealed record RecoveredServer(string DataDirectory, int Port, string BaseBackup, TimeSpan Duration, string StopCommand);

/// <summary>
/// <c>restore --pitr --target-time T [--into DIR]</c>: a new data directory from the newest base backup that finished
/// before T, recovered with the archived WAL up to T (<c>recovery_target_time</c>, then promoted), started on a free
/// port on 127.0.0.1 without archiving of its own (it must not write into the archive it recovers from). The original
/// server is not touched. <c>restore stop DIR</c> stops it again (only a directory this class made).
/// </summary>
public sealed class PointInTimeRecovery(PostgresTools tools, BackupOptions options, TextWriter output, TimeProvider clock)
{
    public const string Marker = "# Added by TC Studio's point-in-time recovery (restore --pitr)";
    private const string LogName = "recovery.log";

    public async Task<RecoveredServer> RunAsync(DateTimeOffset target, string? into, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        if (options.WalArchive is not { Length: > 0 } archiveSetting || !Directory.Exists(archiveSetting))
        {
            throw new BackupConfigurationException("Backup:WalArchive is not set or does not exist: point-in-time recovery replays the "
                + "archived WAL from there.");
        }
        var archive = Path.GetFullPath(archiveSetting);
        if (archive.IndexOfAny(['\'', '"', '%', '\n', '\r']) >= 0)
        {
            throw new BackupConfigurationException("Backup:WalArchive must not contain quotes, '%' or line breaks (it goes into restore_command).");
        }
        var bases = BaseBackupManifest.List(options.BaseDirectory);
        var chosen = bases.LastOrDefault(b => b.FinishedAt <= target) ?? throw new BackupException(bases.Count == 0
            ? $"there is no base backup in {options.BaseDirectory}: take one with 'backup --base' (with WAL archiving on) before you need it."
            : $"no base backup finished before {Utc(target)}: the oldest kept one finished at {Utc(bases[0].FinishedAt)}, and the "
                + "WAL before it is gone.");
        if (target > clock.GetUtcNow().AddMinutes(1))
        {
            throw new BackupUsageException($"--target-time {Utc(target)} is in the future.");
        }

        var directory = Path.GetFullPath(into ?? Path.Combine(options.ResolvedRecoveryDirectory,
            "pitr-" + target.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)));
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
        {
            throw new BackupUsageException($"{directory} exists and is not empty; point-in-time recovery builds a new data directory "
                + "(choose another --into).");
        }
        EnsureReachableByPostgres(directory);
        output.WriteLine($"  base backup {chosen.Name} (finished {Utc(chosen.FinishedAt)}, WAL from {chosen.StartWalFile}), "
            + $"archived WAL in {archive}");

        Directory.CreateDirectory(directory);
        PostgresTools.Run("cp", "-a", Path.Combine(options.BaseDirectory, chosen.Name) + "/.", directory);
        File.Delete(Path.Combine(directory, "backup_manifest")); // it describes the backup, not this new server
        await File.WriteAllTextAsync(Path.Combine(directory, "recovery.signal"), "", cancellationToken);
        var port = FindFreePort();
        await File.AppendAllTextAsync(Path.Combine(directory, "postgresql.auto.conf"), string.Join('\n',
        [
            "",
            Marker,
            $"restore_command = 'cp \"{archive}/%f\" \"%p\"'",
            $"recovery_target_time = '{target.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture)}+00'",
            "recovery_target_action = 'promote'",
            // Its own port on loopback, no Unix socket (a long path would not fit), and no archiving into the source's archive.
            $"port = {port}",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "archive_mode = 'off'",
            "",
        ]), cancellationToken);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        PostgresTools.GiveToPostgresUser(directory, recursive: true);

        output.WriteLine($"  starting it on 127.0.0.1:{port} and replaying WAL up to {Utc(target)} (log: {Path.Combine(directory, LogName)})");
        var timeoutSeconds = ((int)options.RecoveryTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        var start = await tools.RunAsync("pg_ctl", ["-D", directory, "-l", Path.Combine(directory, LogName), "-w", "-t", timeoutSeconds, "start"],
            null, null, cancellationToken, asPostgresUser: true);
        if (start.ExitCode != 0) throw new BackupException($"the recovered server did not start: {LogReason(directory) ?? start.Reason}");

        // pg_ctl returns once the server is consistent; it is done when it has promoted itself at the target.
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var state = await ClusterStateAsync(directory, cancellationToken);
            if (state == "in production") break;
            var running = await tools.RunAsync("pg_ctl", ["-D", directory, "status"], null, null, cancellationToken, asPostgresUser: true);
            if (running.ExitCode != 0)
            {
                throw new BackupException($"recovery stopped before reaching {Utc(target)}: {LogReason(directory) ?? "the server exited"}. "
                    + "If the WAL up to that moment was not archived yet, run SELECT pg_switch_wal() on the server, wait for "
                    + "the archiver and retry.");
            }
            if (deadline.Elapsed > options.RecoveryTimeout)
            {
                throw new BackupException($"recovery did not reach {Utc(target)} within Backup:RecoveryTimeout ({options.RecoveryTimeout}); "
                    + $"the server is still running: {StopCommand(directory)}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
        }
        return new RecoveredServer(directory, port, chosen.Name, stopwatch.Elapsed, StopCommand(directory));
    }

    /// <summary>Stops a server this class started; false when none is running there.</summary>
    public async Task<bool> StopAsync(string directory, CancellationToken cancellationToken)
    {
        var settings = Path.Combine(directory, "postgresql.auto.conf");
        if (!File.Exists(settings) || !(await File.ReadAllTextAsync(settings, cancellationToken)).Contains(Marker, StringComparison.Ordinal))
        {
            throw new BackupUsageException($"{directory} is not a data directory made by 'restore --pitr'; restore stop touches nothing else.");
        }
        if (!File.Exists(Path.Combine(directory, "postmaster.pid"))) return false;
        var stop = await tools.RunAsync("pg_ctl", ["-D", directory, "-m", "fast", "-w", "-t", "60", "stop"], null, null, cancellationToken,
            asPostgresUser: true);
        PostgresTools.EnsureSuccess(stop, "pg_ctl stop");
        return true;
    }

    public string StopCommand(string directory) =>
        (PostgresTools.RunningAsRoot ? $"runuser -u {PostgresTools.PostgresUser} -- " : "") + $"{tools.PathOf("pg_ctl")} -D {directory} -m fast stop";

    /// <summary>pg_controldata's "Database cluster state" ("in archive recovery", "in production", ...).</summary>
    private async Task<string?> ClusterStateAsync(string directory, CancellationToken cancellationToken)
    {
        var result = await tools.RunAsync("pg_controldata", ["-D", directory], null, null, cancellationToken);
        return result.StandardOutput.Split('\n')
            .FirstOrDefault(l => l.StartsWith("Database cluster state:", StringComparison.Ordinal))?
            .Split(':', 2)[1].Trim();
    }

    private static string? LogReason(string directory)
    {
        var log = Path.Combine(directory, LogName);
        if (!File.Exists(log)) return null;
        return File.ReadLines(log).LastOrDefault(l => l.Contains("FATAL:", StringComparison.Ordinal)
            || l.Contains("PANIC:", StringComparison.Ordinal))?.Trim();
    }

    /// <summary>When root, the server runs as postgres: every parent of the directory must be searchable by others.</summary>
    private static void EnsureReachableByPostgres(string directory)
    {
        if (!PostgresTools.RunningAsRoot || OperatingSystem.IsWindows()) return;
        for (var parent = Path.GetDirectoryName(directory); !string.IsNullOrEmpty(parent) && parent != "/"; parent = Path.GetDirectoryName(parent))
        {
            if (Directory.Exists(parent) && (File.GetUnixFileMode(parent) & UnixFileMode.OtherExecute) == 0)
            {
                throw new BackupUsageException($"the postgres user cannot reach {directory}: {parent} is not searchable by others; "
                    + "choose an --into under /var/lib or /tmp.");
            }
        }
    }

    private static int FindFreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string Utc(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.FFFFFF", CultureInfo.InvariantCulture) + "Z";
}
