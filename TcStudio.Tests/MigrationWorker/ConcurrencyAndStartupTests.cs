using System.Text;
using Npgsql;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

public sealed class ConcurrencyAndStartupTests(EmptyDatabaseFixture database) : IClassFixture<EmptyDatabaseFixture>
{
    [Fact]
    public async Task Two_workers_started_together_migrate_and_seed_once()
    {
        var runs = await Task.WhenAll(
            MigrationWorkerRunner.RunAsync(database.ConnectionString),
            MigrationWorkerRunner.RunAsync(database.ConnectionString));

        Assert.All(runs, r => Assert.True(r.ExitCode == 0, r.ToString()));
        Assert.Single(runs, r => r.StandardOutput.Contains("seed: created"));
        Assert.Single(runs, r => r.StandardOutput.Contains("seed: nothing to do"));
        Assert.Equal("2 2 1 2", await database.ScalarAsync<string>(
            "SELECT (SELECT count(*) FROM roles) || ' ' || (SELECT count(*) FROM users) || ' ' || "
            + "(SELECT count(*) FROM workspaces) || ' ' || (SELECT count(*) FROM workspace_members)"));
    }

    [Fact]
    public async Task A_worker_started_before_its_database_server_succeeds_once_the_server_is_up()
    {
        // The cluster exists (so its password is known) but is not running yet.
        var cluster = await PostgresServer.StartPrivateClusterAsync(port: LocalPostgresPort(), start: true);
        await cluster.StopAsync();
        try
        {
            var connectionString = new NpgsqlConnectionStringBuilder(cluster.ConnectionString("tc_studio")).ConnectionString;
            var stdout = new StringBuilder();
            var stderr = new StringBuilder();
            using var worker = ProcessRunner.StartDotnet(MigrationWorkerRunner.Dll, [],
                MigrationWorkerRunner.Environment(connectionString), stdout, stderr);

            // Start the server only once the worker has tried and failed at least once.
            var waitedSince = DateTime.UtcNow;
            while (!Contains(stderr, "waiting for PostgreSQL at 127.0.0.1:"))
            {
                Assert.False(worker.HasExited, $"the worker gave up early:\n{stdout}\n{stderr}");
                Assert.True(DateTime.UtcNow - waitedSince < TimeSpan.FromSeconds(60), "the worker never reported a failed attempt");
                await Task.Delay(200);
            }
            await cluster.StartAsync();

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await worker.WaitForExitAsync(timeout.Token);
            worker.WaitForExit();
            var result = new ProcessResult(worker.ExitCode, stdout.ToString(), stderr.ToString());
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("seed: created", result.StandardOutput);
            Assert.DoesNotContain(cluster.Password, result.AllOutput);
        }
        finally
        {
            await cluster.DestroyAsync();
        }
    }

    private static bool Contains(StringBuilder text, string value)
    {
        lock (text) return text.ToString().Contains(value);
    }

    private static int LocalPostgresPort() => TcStudio.LocalPostgres.LocalPostgresCluster.FindFreePort();
}
