using System.Diagnostics;
using Npgsql;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

[Collection(AppHostCollection.Name)]
public sealed class AppHostPostgresTests(PostgresServer server, ITestOutputHelper output)
{
    [Fact]
    public async Task A_second_run_reuses_the_private_cluster_and_its_data()
    {
        await using var state = new AppHostStateDirectory();

        var cold = Stopwatch.StartNew();
        await using (var first = AppHostProcess.Start(state.Path))
        {
            await first.WaitUntilRunningAsync();
            cold.Stop();
            Assert.Contains("PostgreSQL: creating a private cluster", first.Output);
            await ExecuteAsync(state, "CREATE TABLE reuse_marker (note text); INSERT INTO reuse_marker VALUES ('from the first run')");
            Assert.Equal(0, (await AppHostScenario.InterruptAsync(first)).ExitCode);
            await AppHostScenario.AssertNothingLeftAsync(first);
        }
        var password = state.SuperuserPassword;

        var warm = Stopwatch.StartNew();
        await using var second = AppHostProcess.Start(state.Path);
        await second.WaitUntilRunningAsync();
        warm.Stop();
        output.WriteLine($"cold start (creating the cluster): {cold.Elapsed.TotalSeconds:0.0} s; warm start (reusing it): {warm.Elapsed.TotalSeconds:0.0} s");

        Assert.Contains("PostgreSQL: starting the private cluster", second.Output);
        Assert.DoesNotContain("creating a private cluster", second.Output);
        Assert.Contains("[worker] migrate: up to date", second.Output);
        Assert.Contains("[worker] seed: nothing to do", second.Output);
        Assert.Equal(password, state.SuperuserPassword);
        Assert.Equal("from the first run", await ScalarAsync(state, "SELECT note FROM reuse_marker"));

        Assert.Equal(0, (await AppHostScenario.InterruptAsync(second)).ExitCode);
        await AppHostScenario.AssertNothingLeftAsync(second);
        output.WriteLine(second.Output);
    }

    [Fact]
    public async Task A_second_apphost_on_the_same_state_directory_is_refused_and_the_first_keeps_running()
    {
        await using var state = new AppHostStateDirectory();
        await using var first = AppHostProcess.Start(state.Path);
        var api = await first.WaitUntilRunningAsync();

        await using var second = AppHostProcess.Start(state.Path);
        var exitCode = await second.WaitForExitAsync(TimeSpan.FromMinutes(1));
        output.WriteLine(second.Output);

        Assert.Equal(TcStudio.AppHost.AppHostExitCodes.BadConfiguration, exitCode);
        Assert.Contains($"Another AppHost is running with the PostgreSQL state directory {state.Path}", second.Output);
        await AppHostScenario.AssertHealthyAsync(api);
        Assert.Equal(0, (await AppHostScenario.InterruptAsync(first)).ExitCode);
        await AppHostScenario.AssertNothingLeftAsync(first);
    }

    [Fact]
    public async Task A_cluster_left_running_by_a_killed_apphost_is_adopted_and_stopped_by_the_next_run()
    {
        await using var state = new AppHostStateDirectory();
        await using var killed = AppHostProcess.Start(state.Path);
        await killed.WaitUntilRunningAsync();
        // SIGKILL leaves no chance to clean up: the API and PostgreSQL outlive the AppHost.
        var apiPid = killed.ServicePid("API");
        Assert.True(TcStudio.AppHost.Posix.SendSignal(killed.Id, 9) && TcStudio.AppHost.Posix.SendSignal(apiPid, 9));
        Assert.NotNull(await killed.WaitForExitAsync(AppHostScenario.StopLimit));
        Assert.NotNull(await state.Cluster.ReadRunningPortAsync());

        await using var next = AppHostProcess.Start(state.Path);
        await next.WaitUntilRunningAsync();
        Assert.Contains("the private cluster was still running", next.Output);

        Assert.Equal(0, (await AppHostScenario.InterruptAsync(next)).ExitCode);
        Assert.Contains("PostgreSQL: stopped", next.Output);
        await AppHostScenario.AssertNothingLeftAsync(next);
        await AppHostScenario.AssertNothingLeftAsync(killed);
    }

    [Fact]
    public async Task An_existing_server_in_ConnectionStrings_postgres_is_used_and_left_running()
    {
        var database = $"tcstudio_apphost_{Guid.NewGuid():N}"[..30];
        await using var state = new AppHostStateDirectory();
        try
        {
            await using var appHost = AppHostProcess.Start(state.Path, new Dictionary<string, string?>
            {
                ["ConnectionStrings__postgres"] = server.Admin.ConnectionString,
                ["AppHost__DatabaseName"] = database,
            });
            var api = await appHost.WaitUntilRunningAsync();
            await AppHostScenario.AssertHealthyAsync(api);
            Assert.Contains("PostgreSQL: using the server in ConnectionStrings:postgres", appHost.Output);
            if (server.Admin.Password is { Length: > 0 } password) Assert.DoesNotContain(password, appHost.Output);

            Assert.Equal(0, (await AppHostScenario.InterruptAsync(appHost)).ExitCode);
            Assert.DoesNotContain("PostgreSQL: stopped", appHost.Output);
            await AppHostScenario.AssertNothingLeftAsync(appHost);
            Assert.False(Directory.Exists(state.Path), "no local cluster should be created");

            // The server is still up, and holds the seeded system database.
            await using var connection = new NpgsqlConnection(server.ConnectionString(database, pooling: false));
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT string_agg(username, ',' ORDER BY username) FROM users", connection);
            Assert.Equal("admin,user", await command.ExecuteScalarAsync());
        }
        finally
        {
            await server.DropDatabaseAsync(database);
        }
    }

    private static async Task ExecuteAsync(AppHostStateDirectory state, string sql)
    {
        await using var connection = await OpenSystemDatabaseAsync(state);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<object?> ScalarAsync(AppHostStateDirectory state, string sql)
    {
        await using var connection = await OpenSystemDatabaseAsync(state);
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }

    /// <summary>The running private cluster, found the way a developer would: its port in postmaster.pid, its password file.</summary>
    private static async Task<NpgsqlConnection> OpenSystemDatabaseAsync(AppHostStateDirectory state)
    {
        var port = await state.Cluster.ReadRunningPortAsync() ?? throw new InvalidOperationException("PostgreSQL is not running");
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1", Port = port, Database = "tc_studio", Username = "postgres",
            Password = state.SuperuserPassword, Pooling = false,
        }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }
}
