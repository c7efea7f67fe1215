using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

public sealed class ResetTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task Reset_drops_everything_and_rebuilds_but_not_in_production_without_force()
    {
        Assert.Equal(0, (await MigrationWorkerRunner.RunAsync(database.ConnectionString, "seed")).ExitCode);
        await database.ExecuteAsync("INSERT INTO activities (id, action, entity_type) VALUES (gen_random_uuid(), 'system.marker', 'system')");

        var refused = await MigrationWorkerRunner.RunAsync(
            MigrationWorkerRunner.Environment(database.ConnectionString, "Production"), "reset");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--force", refused.StandardError);
        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM activities WHERE action = 'system.marker'"));

        var reset = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "reset");
        Assert.True(reset.ExitCode == 0, reset.ToString());
        Assert.Contains("reset: done.", reset.StandardOutput);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM activities"));
        Assert.Equal(2L, await database.ScalarAsync<long>("SELECT count(*) FROM users"));
    }
}
