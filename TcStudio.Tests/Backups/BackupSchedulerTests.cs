using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using TcStudio.MigrationWorker.Backups;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Backups;

/// <summary>
/// backup --schedule: on a test clock, a scheduled run writes a backup and moves tcstudio.backup.last_success and
/// tcstudio.backup.duration; a failed run is counted and lets last_success grow; a second scheduler stands by until
/// the first goes away. And the verb itself, as a process, on a schedule of every second.
/// </summary>
public sealed class BackupSchedulerTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private static readonly DateTimeOffset Start = new(2026, 11, 29, 2, 59, 0, TimeSpan.Zero);

    [Fact]
    public async Task A_scheduled_run_writes_a_backup_and_moves_the_metrics_and_a_second_scheduler_stands_by()
    {
        using var directory = BackupFixture.NewDirectory("schedule");
        var clock = new FakeTimeProvider(Start);
        await using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new BackupMetrics(services.GetRequiredService<IMeterFactory>(), clock);
        using var recorder = new MeasurementRecorder(instrument => instrument.Meter.Name == BackupMetrics.MeterName);
        var options = new BackupOptions { Directory = directory.Path };
        var connection = new NpgsqlConnectionStringBuilder(database.ConnectionString);
        var first = new SharedWriter();
        var failNext = false;
        var firstRuns = 0;
        var firstScheduler = NewScheduler(first, async ct =>
        {
            Interlocked.Increment(ref firstRuns);
            if (failNext) throw new BackupException("the disk is full");
            await new LogicalBackup(new PostgresTools(null), options, first, clock)
                .RunAsync(new BackupSource(BackupKinds.System, connection, options.ResolvedDirectory), ct);
            return true;
        });
        var secondRuns = 0;
        var second = new SharedWriter();
        var secondScheduler = NewScheduler(second, _ =>
        {
            Interlocked.Increment(ref secondRuns);
            return Task.FromResult(true);
        });

        using var stopFirst = new CancellationTokenSource();
        using var stopSecond = new CancellationTokenSource();
        var firstRunning = firstScheduler.RunAsync(stopFirst.Token);
        await WaitForAsync(() => first.Text.Contains("next logical backup at 2026-11-29 03:00:00Z ('0 3 * * *', UTC)"), first);
        Assert.Contains("holding the logical scheduler lock", first.Text);
        var secondRunning = secondScheduler.RunAsync(stopSecond.Token);
        await WaitForAsync(() => second.Text.Contains("another logical scheduler holds the lock; standing by"), second);

        recorder.Observe();
        Assert.Empty(recorder.Of(BackupMetrics.LastSuccessName)); // no good backup yet: no value, so an "absent" alert fires

        // 03:00 comes: the run writes a backup, timed on the test clock.
        await AdvanceUntilAsync(clock, () => Volatile.Read(ref firstRuns) > 0, first);
        await WaitForAsync(() => recorder.Of(BackupMetrics.DurationName).Count == 1, first);
        var run = Assert.Single(recorder.Of(BackupMetrics.DurationName));
        Assert.Equal(("logical", "success", "s"), (run.Tag(BackupMetrics.KindTag), run.Tag(BackupMetrics.OutcomeTag), run.Unit));
        Assert.Matches($@"^{database.DatabaseName}-20261129T030\d00Z\.dump$",
            Path.GetFileName(Assert.Single(Directory.GetFiles(directory.Path, "*.dump"))));
        // Printed after the run's metric is recorded: wait for it rather than race it.
        await WaitForAsync(() => first.Text.Contains("next logical backup at 2026-11-30 03:00:00Z"), first);

        clock.Advance(TimeSpan.FromHours(2));
        recorder.Observe();
        var sinceSuccess = recorder.Of(BackupMetrics.LastSuccessName).Last();
        Assert.Equal((7200.0, "logical"), (sinceSuccess.Value, sinceSuccess.Tag(BackupMetrics.KindTag)));

        // The next night's run fails: counted as a failure; last_success keeps growing.
        failNext = true;
        await AdvanceUntilAsync(clock, () => Volatile.Read(ref firstRuns) > 1, first, step: TimeSpan.FromHours(1));
        await WaitForAsync(() => recorder.Of(BackupMetrics.DurationName).Count == 2, first);
        Assert.Equal("failure", recorder.Of(BackupMetrics.DurationName)[1].Tag(BackupMetrics.OutcomeTag));
        Assert.Contains("backup --schedule: the run failed: the disk is full", first.Text);
        recorder.Observe();
        Assert.True(recorder.Of(BackupMetrics.LastSuccessName).Last().Value >= 24 * 3600);
        Assert.Equal(0, Volatile.Read(ref secondRuns)); // only the lock holder ran

        // The first scheduler goes away: the second takes the lock over.
        await stopFirst.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => firstRunning);
        await AdvanceUntilAsync(clock, () => second.Text.Contains("the other scheduler is gone; this one takes over"), second,
            step: TimeSpan.FromSeconds(10));
        await stopSecond.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => secondRunning);

        BackupScheduler NewScheduler(TextWriter output, Func<CancellationToken, Task<bool>> runOnce) =>
            new(BackupScheduler.Parse("0 3 * * *"), "0 3 * * *", BackupScheduler.LogicalKind, connection, metrics, clock, output,
                NullLogger.Instance, runOnce);
    }

    [Fact]
    public async Task The_schedule_verb_runs_backups_until_SIGTERM_then_exits_0_and_refuses_a_bad_expression()
    {
        using var directory = BackupFixture.NewDirectory("schedule-process");
        var environment = MigrationWorkerRunner.Environment(database.ConnectionString);
        environment["Backup__Directory"] = directory.Path;
        environment["Logging__LogLevel__Default"] = "Warning";

        var bad = await MigrationWorkerRunner.RunAsync(environment, "backup", "--schedule", "every night");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("backup --schedule: --schedule 'every night' is not a cron expression", bad.StandardError);

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var process = ProcessRunner.StartDotnet(MigrationWorkerRunner.Dll, ["backup", "--schedule", "*/1 * * * * *"], environment,
            stdout, stderr);
        try
        {
            var deadline = Stopwatch.StartNew();
            while (Directory.GetFiles(directory.Path, "*.manifest.json").Length == 0)
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(90) && !process.HasExited,
                    $"no scheduled backup was written\n{stdout}\n{stderr}");
                await Task.Delay(100);
            }
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString()])) await kill.WaitForExitAsync();
            await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}\n{stdout}\n{stderr}");
            var output = stdout.ToString();
            Assert.Contains("backup --schedule: holding the logical scheduler lock", output);
            Assert.Matches(@"(?m)^backup: \S+ .* → \S+\.dump .*; 1 kept, 0 removed", output);
            Assert.Contains("backup --schedule: stopped.", output);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static async Task WaitForAsync(Func<bool> condition, SharedWriter output)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "timed out; output so far:\n" + output.Text);
            await Task.Delay(20);
        }
    }

    /// <summary>Moves the test clock on in steps until <paramref name="condition"/> holds (timers fire as it passes them).</summary>
    private static async Task AdvanceUntilAsync(FakeTimeProvider clock, Func<bool> condition, SharedWriter output, TimeSpan? step = null)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "timed out; output so far:\n" + output.Text);
            clock.Advance(step ?? TimeSpan.FromMinutes(1));
            await Task.Delay(200);
        }
    }

    /// <summary>A thread-safe StringWriter (the scheduler and the test read and write it concurrently).</summary>
    private sealed class SharedWriter : StringWriter
    {
        private readonly Lock _lock = new();
        public string Text { get { lock (_lock) return ToString(); } }
        public override void Write(char value) { lock (_lock) base.Write(value); }
        public override void Write(string? value) { lock (_lock) base.Write(value); }
        public override void WriteLine(string? value) { lock (_lock) base.WriteLine(value); }
    }
}
