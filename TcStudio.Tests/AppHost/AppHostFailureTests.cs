using System.Net;
using System.Net.Sockets;
using Npgsql;
using TcStudio.AppHost;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

[Collection(AppHostCollection.Name)]
public sealed class AppHostFailureTests(PostgresServer server, ITestOutputHelper output)
{
    [Fact]
    public async Task A_migration_worker_that_fails_stops_the_apphost_with_its_reason_and_never_starts_the_api()
    {
        // A role that exists nowhere: the login fails on any server (scram or trust), and is not retried.
        const string wrongPassword = "not-the-password-7f3a";
        var unusable = new NpgsqlConnectionStringBuilder(server.Admin.ConnectionString)
        {
            Username = "tcstudio_no_such_role",
            Password = wrongPassword,
        };
        await using var state = new AppHostStateDirectory();
        await using var appHost = AppHostProcess.Start(state.Path, new Dictionary<string, string?>
        {
            ["ConnectionStrings__postgres"] = unusable.ConnectionString,
        });

        var exitCode = await appHost.WaitForExitAsync(TimeSpan.FromMinutes(3));
        output.WriteLine(appHost.Output);

        Assert.Equal(AppHostExitCodes.Failed, exitCode);
        Assert.Matches(
            @"The migration worker failed with exit code 1: migrate\+seed failed: PostgreSQL at .* as tcstudio_no_such_role refused the connection: 28",
            appHost.Output);
        Assert.Contains("Not starting the API", appHost.Output);
        Assert.DoesNotContain("API: started", appHost.Output);
        Assert.DoesNotContain(AppHostProcess.RunningLine, appHost.Output);
        Assert.DoesNotContain(wrongPassword, appHost.Output);
        Assert.False(Directory.Exists(state.Path), "an existing server was configured: no local cluster should be created");
        await AppHostScenario.AssertNothingLeftAsync(appHost);
    }

    [Fact]
    public async Task An_api_that_cannot_start_is_reported_with_its_reason()
    {
        using var occupied = new TcpListener(IPAddress.Loopback, 0);
        occupied.Start();
        var port = ((IPEndPoint)occupied.LocalEndpoint).Port;
        await using var state = new AppHostStateDirectory();
        await using var appHost = AppHostProcess.Start(state.Path, new Dictionary<string, string?>
        {
            ["AppHost__ApiUrl"] = $"http://127.0.0.1:{port}",
        });

        var exitCode = await appHost.WaitForExitAsync(TimeSpan.FromMinutes(3));
        output.WriteLine(appHost.Output);

        Assert.Equal(AppHostExitCodes.Failed, exitCode);
        Assert.Matches(@"The API exited with code \d+.* before it became healthy: .*address already in use", appHost.Output);
        Assert.Contains("PostgreSQL: stopped", appHost.Output);
        Assert.DoesNotContain(AppHostProcess.RunningLine, appHost.Output);
        await AppHostScenario.AssertNothingLeftAsync(appHost, apiPortMayBeInUse: true);
    }

    [Fact]
    public async Task An_api_that_dies_is_reported_and_ends_the_apphost_non_zero_with_postgres_stopped()
    {
        await using var state = new AppHostStateDirectory();
        await using var appHost = AppHostProcess.Start(state.Path);
        await appHost.WaitUntilRunningAsync();

        var apiPid = appHost.ServicePid("API");
        Assert.True(Posix.SendSignal(apiPid, 9), "could not kill the API");

        var exitCode = await appHost.WaitForExitAsync(AppHostScenario.StopLimit);
        output.WriteLine(appHost.Output);
        Assert.Equal(AppHostExitCodes.Failed, exitCode);
        Assert.Contains("The API exited unexpectedly with code 137", appHost.Output);
        Assert.Contains("PostgreSQL: stopped", appHost.Output);
        await AppHostScenario.AssertNothingLeftAsync(appHost);
    }
}
