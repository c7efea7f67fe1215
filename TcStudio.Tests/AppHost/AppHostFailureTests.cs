using System.Net;
using System.Net.Sockets;
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

    [Fact]
    public async Task A_fixed_api_port_that_another_process_holds_fails_the_api_with_one_line_naming_the_port()
    {
        // Someone else's server on the API's fixed port, which would answer the API's health check.
        using var otherProcess = new TcpListener(IPAddress.Loopback, 0);
        otherProcess.Start();
        var port = ((IPEndPoint)otherProcess.LocalEndpoint).Port;
        await using var run = await TcStudioAppHost.CreateAsync(configure: builder =>
        {
            builder.Configuration["DcpPublisher:RandomizePorts"] = "false"; // as under ./run.sh: fixed ports are bound
            builder.CreateResourceBuilder(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "api"))
                .WithEndpoint("http", endpoint => endpoint.Port = port);
        });
        await run.StartAsync();

        var api = await run.WaitForStateAsync("api", KnownResourceStates.FailedToStart, KnownResourceStates.Running);
        Assert.Equal(KnownResourceStates.FailedToStart, api.Snapshot.State?.Text);
        Assert.Null(api.Snapshot.StartTimeStamp); // its process never ran
        var logs = await run.ConsoleLogsAsync("api");
        Assert.Contains($"port {port} is in use by another process (endpoint 'http')", logs);
        Assert.DoesNotContain("   at ", logs); // the reason, not a stack trace
        Assert.NotEqual(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, api.Snapshot.HealthStatus);

        await run.StopAsync();
        await run.AssertNothingLeftAsync();
    }
}
