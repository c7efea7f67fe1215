using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>Configuration mistakes stop the process at once with one line and exit code 2, never a password.</summary>
public sealed class ConfigurationTests
{
    [Fact]
    public async Task A_missing_connection_string_exits_2_naming_the_key_and_an_example()
    {
        var result = await MigrationWorkerRunner.RunAsync(connectionString: null, "migrate");

        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains("ConnectionStrings:tcstudio", line);
        Assert.Contains("Example: Host=", line);
    }

    [Fact]
    public async Task A_malformed_connection_string_exits_2_without_echoing_it()
    {
        var result = await MigrationWorkerRunner.RunAsync("Host=localhost;Password=hunter2-secret;Bogus Keyword=1", "migrate");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("malformed", result.StandardError);
        Assert.DoesNotContain("hunter2-secret", result.AllOutput);
    }

    [Fact]
    public async Task An_unsupported_provider_exits_2_saying_what_is_supported()
    {
        var environment = MigrationWorkerRunner.Environment("Host=localhost;Database=x");
        environment["DB_TYPE"] = "mysql";
        var result = await MigrationWorkerRunner.RunAsync(environment, "migrate");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("'mysql'", result.StandardError);
        Assert.Contains("PostgreSQL", result.StandardError);
    }

    [Fact]
    public async Task An_unreachable_server_fails_after_the_startup_timeout_with_one_line_and_exit_1()
    {
        var environment = MigrationWorkerRunner.Environment(
            $"Host=127.0.0.1;Port={TcStudio.LocalPostgres.LocalPostgresCluster.FindFreePort()};Database=x;Username=u;Password=never-printed");
        environment["Database__StartupTimeout"] = "00:00:03";
        var result = await MigrationWorkerRunner.RunAsync(environment, "migrate");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("did not become reachable within 3 s", result.StandardError);
        Assert.DoesNotContain("never-printed", result.AllOutput);
    }
}
