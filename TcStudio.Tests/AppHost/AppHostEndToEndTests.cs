using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

[Collection(AppHostCollection.Name)]
public sealed class AppHostEndToEndTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_apphost_brings_up_the_system_and_stops_it_cleanly_on_SIGINT()
    {
        await using var state = new AppHostStateDirectory();
        await using var appHost = AppHostProcess.Start(state.Path);

        var api = await appHost.WaitUntilRunningAsync();
        output.WriteLine($"cold start (creating the cluster): running after {appHost.SinceStart.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(new Uri($"http://localhost:{appHost.ApiPort}"), api);

        await AppHostScenario.AssertHealthyAsync(api);
        await AppHostScenario.AssertAdminSeesTwsbpAsync(api);

        var printed = appHost.Output;
        Assert.Contains("[worker] seed: created", printed);
        Assert.Contains("[api] ", printed);
        Assert.Contains($"Scalar API reference:  {api.ToString().TrimEnd('/')}/scalar", printed);
        Assert.Contains("admin  password: Seed:AdminPassword is not set, so the documented Development default", printed);
        Assert.Contains("user   password: Seed:UserPassword is not set", printed);
        Assert.DoesNotContain(TcStudio.Data.Seeding.SeedOptions.DevelopmentAdminPassword, printed);
        Assert.DoesNotContain(TcStudio.Data.Seeding.SeedOptions.DevelopmentUserPassword, printed);
        Assert.DoesNotContain(state.SuperuserPassword, printed);

        var (exitCode, took) = await AppHostScenario.InterruptAsync(appHost);
        output.WriteLine($"stopped {took.TotalSeconds:0.0} s after SIGINT");
        Assert.True(exitCode == 0, $"exit code {exitCode}\n{appHost.Output}");
        Assert.Contains("Stopping the api", appHost.Output);
        Assert.Contains("PostgreSQL: stopped", appHost.Output);
        await AppHostScenario.AssertNothingLeftAsync(appHost);
        output.WriteLine(appHost.Output);
    }
}
