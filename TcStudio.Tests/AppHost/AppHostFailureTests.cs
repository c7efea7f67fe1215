using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;

namespace TcStudio.Tests.AppHost;

[Collection(AppHostCollection.Name)]
public sealed class AppHostFailureTests
{
    [Fact]
    public async Task A_migration_worker_that_fails_on_bad_configuration_keeps_the_api_from_starting()
    {
        await using var run = await TcStudioAppHost.CreateAsync(configure: builder =>
            builder.CreateResourceBuilder(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "migration-worker"))
                .WithEnvironment("DB_TYPE", "mysql"));
        await run.StartAsync();

        var worker = await run.WaitForStateAsync("migration-worker", KnownResourceStates.Finished, KnownResourceStates.Exited);
        Assert.Equal(2, worker.Snapshot.ExitCode); // bad configuration
        Assert.Contains("Database provider 'mysql' (from DB_TYPE or Database:Provider) is not supported",
            await run.ConsoleLogsAsync("migration-worker"));

        var api = await run.WaitForStateAsync("api", KnownResourceStates.FailedToStart);
        Assert.Null(api.Snapshot.StartTimeStamp); // its process never ran
        Assert.DoesNotContain(run.LeftoverProcesses(), p => p.Contains("TcStudio.Api", StringComparison.Ordinal));

        await run.StopAsync();
        await run.AssertNothingLeftAsync();
    }
}
