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
            var worker = MigrationWorkerRunner.RunAsync(connectionString);
            await Task.Delay(TimeSpan.FromSeconds(3));
            Assert.False(worker.IsCompleted, "the worker should still be waiting for the server");
            await cluster.StartAsync();

            var result = await worker;
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("is not reachable yet", result.StandardError);
            Assert.Contains("seed: created", result.StandardOutput);
            Assert.DoesNotContain(cluster.Password, result.AllOutput);
        }
        finally
        {
            await cluster.DestroyAsync();
        }
    }

    private static int LocalPostgresPort() => TcStudio.AppHost.LocalPostgres.LocalPostgresCluster.FindFreePort();
}
