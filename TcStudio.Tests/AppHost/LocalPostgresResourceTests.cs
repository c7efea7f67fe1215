using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Npgsql;
using static TcStudio.Tests.SystemDatabase.PostgresCommands;

namespace TcStudio.Tests.AppHost;

/// <summary>The local PostgreSQL resource: created on the first run, reused after, one AppHost per state directory.</summary>
[Collection(AppHostCollection.Name)]
public sealed class LocalPostgresResourceTests
{
    [Fact]
    public async Task A_second_run_reuses_the_cluster_and_its_data_and_a_concurrent_apphost_on_it_is_refused()
    {
        var stateDirectory = TcStudioAppHost.NewStateDirectory();
        try
        {
            string password;
            await using (var first = await TcStudioAppHost.CreateAsync(stateDirectory))
            {
                await first.StartAsync();
                await first.WaitForStateAsync("migration-worker", KnownResourceStates.Finished);
                Assert.Contains("Creating a private cluster in " + stateDirectory, await first.ConsoleLogsAsync("postgres"));
                var connectionString = await first.App.GetConnectionStringAsync("tcstudio");
                password = new NpgsqlConnectionStringBuilder(connectionString).Password!;
                await AssertVerifiedTlsAsync(connectionString!, stateDirectory);
                Assert.Contains("TLS on: created a CA and a server certificate", await first.ConsoleLogsAsync("postgres"));
                await ExecuteAsync(connectionString!,
                    "CREATE TABLE reuse_marker (note text); INSERT INTO reuse_marker VALUES ('from the first run')");

                await first.StopAsync();
                await first.AssertNothingLeftAsync();
            }

            await using var second = await TcStudioAppHost.CreateAsync(stateDirectory);
            await second.StartAsync();
            await second.WaitForStateAsync("migration-worker", KnownResourceStates.Finished);
            var postgresLog = await second.ConsoleLogsAsync("postgres");
            Assert.Contains("Starting the private cluster in " + stateDirectory, postgresLog);
            Assert.DoesNotContain("Creating a private cluster", postgresLog);
            Assert.Contains("TLS on: reusing the CA and server certificate", postgresLog);
            // log_connections: the worker's sessions, as whom and to which database, over TLS.
            Assert.Contains("connection authorized: user=postgres database=tc_studio application_name=", postgresLog);
            var secondConnection = await second.App.GetConnectionStringAsync("tcstudio");
            Assert.Equal(password, new NpgsqlConnectionStringBuilder(secondConnection).Password);
            Assert.Equal("from the first run", await ScalarAsync<string>(secondConnection!, "SELECT note FROM reuse_marker"));
            Assert.Contains("seed: nothing to do", await second.ConsoleLogsAsync("migration-worker"));

            // A second AppHost on the same cluster would stop it under the first's feet: its PostgreSQL is refused,
            // and nothing that depends on it starts; the first keeps running.
            await using (var third = await TcStudioAppHost.CreateAsync(stateDirectory))
            {
                await third.StartAsync();
                await third.WaitForStateAsync("postgres", KnownResourceStates.FailedToStart);
                Assert.Contains($"Another AppHost is running with the PostgreSQL state directory {stateDirectory}",
                    await third.ConsoleLogsAsync("postgres"));
                var worker = await third.WaitForStateAsync("migration-worker", KnownResourceStates.FailedToStart);
                Assert.Null(worker.Snapshot.StartTimeStamp);
                await third.StopAsync();
            }
            Assert.Equal("from the first run", await ScalarAsync<string>(secondConnection!, "SELECT note FROM reuse_marker"));

            await second.StopAsync();
            await second.AssertNothingLeftAsync();
        }
        finally
        {
            await TcStudioAppHost.DeleteStateDirectoryAsync(stateDirectory);
        }
    }

    /// <summary>The services' connection string verifies the cluster's own CA and host name, and the session is TLS.</summary>
    private static async Task AssertVerifiedTlsAsync(string connectionString, string stateDirectory)
    {
        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        Assert.Equal(SslMode.VerifyFull, settings.SslMode);
        Assert.Equal(Path.Combine(stateDirectory, "tls", "ca.crt"), settings.RootCertificate);
        Assert.True(await ScalarAsync<bool>(connectionString, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"));
    }
}
