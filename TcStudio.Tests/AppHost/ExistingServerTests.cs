using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Npgsql;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

[Collection(AppHostCollection.Name)]
public sealed class ExistingServerTests(PostgresServer server)
{
    [Fact]
    public async Task With_an_existing_server_the_worker_creates_tc_studio_there_and_nothing_runs_locally()
    {
        if (!server.IsPrivateCluster)
        {
            // The database is named tc_studio by the AppHost: never create it on a server the tests do not own.
            Assert.Skip("TCSTUDIO_TEST_POSTGRES is set: this test creates tc_studio, so it runs on the tests' own cluster only.");
        }
        var devDatabase = $"tcstudio_existing_{Guid.NewGuid():N}"[..30];
        try
        {
            await using var run = await TcStudioAppHost.CreateAsync(existingServer: server.Admin.ConnectionString, configure: builder =>
                builder.CreateResourceBuilder(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "migration-worker"))
                    .WithEnvironment("Seed__DevDatabaseName", devDatabase));
            await run.StartAsync();

            await run.WaitForHealthyAsync("postgres");
            var worker = await run.WaitForStateAsync("migration-worker", KnownResourceStates.Finished, KnownResourceStates.Exited);
            Assert.True(worker.Snapshot.ExitCode == 0, await run.ConsoleLogsAsync("migration-worker"));
            await run.WaitForHealthyAsync("api");
            Assert.Contains("twsbp", await run.AdminWorkspaceSlugsAsync());
            Assert.False(Directory.Exists(run.StateDirectory), "an existing server was configured: no local cluster should be created");

            await run.StopAsync();
            await run.AssertNothingLeftAsync();

            // Each service signed in as its own role: the API as the app role, which is no superuser and bypasses nothing.
            await using (var roles = new NpgsqlConnection(server.ConnectionString("tc_studio", pooling: false)))
            {
                await roles.OpenAsync();
                await using var owner = new NpgsqlCommand(
                    "SELECT pg_get_userbyid(datdba) || ' ' || (SELECT rolsuper || ' ' || rolbypassrls FROM pg_roles WHERE rolname = 'tc_studio_app') "
                    + "FROM pg_database WHERE datname = 'tc_studio'", roles);
                Assert.Equal("tc_studio_owner false false", await owner.ExecuteScalarAsync());
            }

            // The server is still up, and holds the seeded system database.
            await using var connection = new NpgsqlConnection(server.ConnectionString("tc_studio", pooling: false));
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT string_agg(username, ',' ORDER BY username) FROM users", connection);
            Assert.Equal("admin,user", await command.ExecuteScalarAsync());
        }
        finally
        {
            await server.DropDatabaseAsync("tc_studio");
            await server.DropDatabaseAsync(devDatabase);
            // The logins the AppHost gave the services (created on this server by the worker's roles and bootstrap steps).
            await server.DropRolesAsync(["tc_studio_owner", "tc_studio_app", "tc_studio_backup", "tc_studio_definer", "tc_studio_provisioner"]);
        }
    }
}
