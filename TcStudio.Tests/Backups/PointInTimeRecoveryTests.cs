using System.Text.RegularExpressions;
using Npgsql;
using TcStudio.LocalPostgres;
using TcStudio.Tests.Infrastructure;
using static TcStudio.Tests.SystemDatabase.PostgresCommands;

namespace TcStudio.Tests.Backups;

/// <summary>
/// Point-in-time recovery on a private cluster of its own with WAL archiving on: rows A, then the moment T from the
/// server's clock, then rows B and a dropped table; the recovery to T has A, not B, and the table.
/// </summary>
public sealed class PointInTimeRecoveryTests
{
    [Fact]
    public async Task Recovery_to_T_has_the_rows_written_before_T_not_those_after_and_the_table_dropped_after()
    {
        var id = Guid.NewGuid().ToString("N")[..10];
        var root = Path.Combine(Path.GetTempPath(), "tcstudio-tests");
        var archive = Path.Combine(root, $"pitr-{id}-wal");
        var recovered = Path.Combine(root, $"pitr-{id}-recovered");
        using var backups = new TemporaryDirectory("pitr-backups");
        WalArchive.PrepareDirectory(archive);
        var settings = new Dictionary<string, string>(WalArchive.ServerSettings(archive)) { ["full_page_writes"] = "on" };
        var cluster = new LocalPostgresCluster(new LocalPostgresOptions
        {
            StateDirectory = Path.Combine(root, $"pitr-{id}"),
            Durable = false,
            Settings = settings,
        });
        await cluster.StartAsync();
        var worker = MigrationWorkerRunner.Environment(cluster.ConnectionString("pitr_app"));
        worker["Backup__Directory"] = backups.Path;
        worker["Backup__WalArchive"] = archive;
        worker["Logging__LogLevel__Default"] = "Warning";
        try
        {
            await ExecuteAsync(cluster.ConnectionString(), "CREATE DATABASE pitr_app");
            var app = new NpgsqlConnectionStringBuilder(cluster.ConnectionString("pitr_app")) { Pooling = false }.ConnectionString;
            await ExecuteAsync(app, """
                CREATE TABLE items (id int PRIMARY KEY, batch text NOT NULL);
                CREATE TABLE doomed (id int PRIMARY KEY);
                INSERT INTO doomed VALUES (1), (2);
                """);
            Assert.Equal("on", await ScalarAsync<string>(app, "SHOW archive_mode"));

            var baseBackup = await MigrationWorkerRunner.RunAsync(worker, "backup", "--base");
            Assert.True(baseBackup.ExitCode == 0, baseBackup.ToString());
            Assert.True(Regex.IsMatch(baseBackup.StandardOutput,
                @"(?m)^backup --base: [\d.]+ [kMG]?B in [\d.]+ s → base/\d{8}T\d{6}Z, verified; "
                + @"1 kept, 0 removed(, \d+ archived WAL files? removed)?\r?$"),
                baseBackup.ToString());
            Assert.Contains("pg_verifybackup: every file matches", baseBackup.StandardOutput);

            await ExecuteAsync(app, "INSERT INTO items VALUES (1, 'A'), (2, 'A'), (3, 'A')");
            var t = await ScalarAsync<DateTime>(app, "SELECT clock_timestamp()"); // the server's clock, after A committed
            await ExecuteAsync(app, "INSERT INTO items VALUES (4, 'B'), (5, 'B')");
            await ExecuteAsync(app, "DROP TABLE doomed");

            // Everything up to here into the archive: switch segments, then wait for the archiver to report it.
            var segment = await ScalarAsync<string>(app, "SELECT pg_walfile_name(pg_switch_wal())");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (string.CompareOrdinal(await ScalarAsync<string?>(app, "SELECT last_archived_wal FROM pg_stat_archiver") ?? "", segment) < 0)
            {
                Assert.True(DateTime.UtcNow < deadline, $"segment {segment} was not archived within 30 s");
                await Task.Delay(50); // polling the archiver's statistics, not waiting out a guess
            }

            var target = new DateTimeOffset(DateTime.SpecifyKind(t, DateTimeKind.Utc)).ToString("O");
            var restore = await MigrationWorkerRunner.RunAsync(worker, "restore", "--pitr", "--target-time", target, "--into", recovered);
            Assert.True(restore.ExitCode == 0, restore.ToString());
            var port = int.Parse(Regex.Match(restore.StandardOutput, @"running on 127\.0\.0\.1:(\d+)").Groups[1].Value);
            Assert.Contains($"restore stop {recovered}", restore.StandardOutput);

            // The recovered server is started by the worker with its own settings, without the test cluster's TLS.
            var copy = new NpgsqlConnectionStringBuilder(app) { Port = port, SslMode = SslMode.Prefer }.ConnectionString;
            Assert.Equal("A,A,A", await ScalarAsync<string>(copy, "SELECT string_agg(batch, ',' ORDER BY id) FROM items"));
            Assert.Equal(2L, await ScalarAsync<long>(copy, "SELECT count(*) FROM doomed"));
            Assert.False(await ScalarAsync<bool>(copy, "SELECT pg_is_in_recovery()"));
            // The original went on: B is there and the table is gone.
            Assert.Equal(5L, await ScalarAsync<long>(app, "SELECT count(*) FROM items"));

            var stop = await MigrationWorkerRunner.RunAsync(worker, "restore", "stop", recovered);
            Assert.True(stop.ExitCode == 0, stop.ToString());
            Assert.Contains($"restore stop: stopped the recovered server in {recovered}", stop.StandardOutput);
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => ScalarAsync<long>(copy, "SELECT 1"));

            var notOurs = await MigrationWorkerRunner.RunAsync(worker, "restore", "stop", cluster.DataDirectory);
            Assert.Equal(2, notOurs.ExitCode);
            Assert.Contains("is not a data directory made by 'restore --pitr'", notOurs.StandardError);
        }
        finally
        {
            if (File.Exists(Path.Combine(recovered, "postmaster.pid"))) await MigrationWorkerRunner.RunAsync(worker, "restore", "stop", recovered);
            await cluster.DestroyAsync();
            foreach (var directory in new[] { archive, recovered })
            {
                if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
            }
        }
    }
}
