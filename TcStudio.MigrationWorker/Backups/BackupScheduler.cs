using System.Diagnostics;
using Cronos;
using Npgsql;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>
/// <c>backup --schedule "&lt;cron&gt;"</c>: a long-lived worker mode that runs a backup at each occurrence of the cron
/// expression (UTC; 5 fields, or 6 with seconds first), logs each run and feeds <see cref="BackupMetrics"/>. Only one
/// scheduler runs per system database: it holds a session advisory lock on a connection of its own; another one
/// stands by and takes over when the first goes away. A failed run is logged and counted, and the next one still runs.
/// </summary>
public sealed class BackupScheduler(
    CronExpression schedule,
    string expression,
    string kind,
    NpgsqlConnectionStringBuilder lockConnection,
    BackupMetrics metrics,
    TimeProvider clock,
    TextWriter output,
    ILogger logger,
    Func<CancellationToken, Task<bool>> runOnce)
{
    public const string LogicalKind = "logical";
    public const string BaseKind = "base";

    /// <summary>
    /// The schedulers' advisory lock: (class "tcbk" in ASCII, 1 logical | 2 base), in the two-key space, which never
    /// meets the migration lock's single key. One lock per kind: a logical and a base scheduler run side by side.
    /// </summary>
    public const int LockClass = 0x7463_626B;

    public static int LockObject(string kind) => kind == BaseKind ? 2 : 1;

    /// <summary>How often a standing-by scheduler tries to take over.</summary>
    public TimeSpan StandbyPollInterval { get; init; } = TimeSpan.FromSeconds(10);

    public static CronExpression Parse(string expression)
    {
        var fields = expression.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        try
        {
            return CronExpression.Parse(expression, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
        }
        catch (CronFormatException e)
        {
            throw new BackupUsageException($"--schedule '{expression}' is not a cron expression ({e.Message}); e.g. \"0 3 * * *\" "
                + "for 03:00 UTC every day.");
        }
    }

    /// <summary>The newest good backup on disk (a manifest that says so), so the metric survives a restart.</summary>
    public static DateTimeOffset? NewestGoodBackup(BackupOptions options, string kind) =>
        kind == BaseKind
            ? BaseBackupManifest.List(options.BaseDirectory).Select(b => (DateTimeOffset?)b.FinishedAt).LastOrDefault()
            : BackupManifest.List(options.ResolvedDirectory).Where(b => b.Manifest.Kind == BackupKinds.System)
                .Select(b => (DateTimeOffset?)b.Manifest.FinishedAt).Max();

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        NpgsqlConnection? held = null;
        try
        {
            held = await AcquireAsync(cancellationToken);
            while (true)
            {
                var now = clock.GetUtcNow();
                var next = schedule.GetNextOccurrence(now.UtcDateTime, TimeZoneInfo.Utc);
                if (next is null)
                {
                    output.WriteLine($"backup --schedule: '{expression}' has no further occurrence; stopping.");
                    return;
                }
                output.WriteLine($"backup --schedule: next {kind} backup at {next.Value:yyyy-MM-dd HH:mm:ss}Z ('{expression}', UTC)");
                var wait = new DateTimeOffset(next.Value, TimeSpan.Zero) - now;
                if (wait > TimeSpan.Zero) await Task.Delay(wait, clock, cancellationToken);

                // The lock lives as long as its session: if the connection broke (server restart), take it again first.
                if (!await IsAliveAsync(held, cancellationToken))
                {
                    await held.DisposeAsync();
                    held = null;
                    output.WriteLine("backup --schedule: lost the scheduler lock's connection; taking the lock again");
                    held = await AcquireAsync(cancellationToken);
                }

                var stopwatch = Stopwatch.StartNew();
                bool succeeded;
                try
                {
                    succeeded = await runOnce(cancellationToken);
                }
                catch (Exception e) when (!cancellationToken.IsCancellationRequested)
                {
                    succeeded = false;
                    output.WriteLine($"backup --schedule: the run failed: {WorkerHost.OneLine(e)}");
                    logger.LogError(e, "Scheduled {Kind} backup failed", kind);
                }
                metrics.RecordRun(kind, stopwatch.Elapsed, succeeded);
                if (succeeded)
                {
                    logger.LogInformation("Scheduled {Kind} backup done in {Seconds:0.0} s", kind, stopwatch.Elapsed.TotalSeconds);
                }
                else
                {
                    logger.LogWarning("Scheduled {Kind} backup did not fully succeed ({Seconds:0.0} s); see the run's output", kind,
                        stopwatch.Elapsed.TotalSeconds);
                }
            }
        }
        finally
        {
            if (held is not null) await held.DisposeAsync();
        }
    }

    private async Task<NpgsqlConnection> AcquireAsync(CancellationToken cancellationToken)
    {
        var standingBy = false;
        while (true)
        {
            var contended = false;
            var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(lockConnection.ConnectionString)
            {
                Pooling = false, // the lock is the session: a pooled connection would outlive it
                ApplicationName = "tcstudio-backup-scheduler",
            }.ConnectionString);
            try
            {
                await connection.OpenAsync(cancellationToken);
                await using var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_lock(@class, @object)", connection);
                tryLock.Parameters.AddWithValue("class", LockClass);
                tryLock.Parameters.AddWithValue("object", LockObject(kind));
                if ((bool)(await tryLock.ExecuteScalarAsync(cancellationToken))!)
                {
                    output.WriteLine(standingBy
                        ? "backup --schedule: the other scheduler is gone; this one takes over"
                        : $"backup --schedule: holding the {kind} scheduler lock on "
                            + $"{lockConnection.Host}:{lockConnection.Port}/{lockConnection.Database}");
                    return connection;
                }
                contended = true;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                logger.LogWarning("Backup scheduler: cannot reach the database for its lock ({Reason}); retrying", WorkerHost.OneLine(e));
            }
            await connection.DisposeAsync();
            if (contended && !standingBy)
            {
                output.WriteLine($"backup --schedule: another {kind} scheduler holds the lock; standing by");
                standingBy = true;
            }
            await Task.Delay(StandbyPollInterval, clock, cancellationToken);
        }
    }

    private static async Task<bool> IsAliveAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            await using var ping = new NpgsqlCommand("SELECT 1", connection);
            await ping.ExecuteScalarAsync(cancellationToken);
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            return false;
        }
    }
}
