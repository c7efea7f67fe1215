using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.SystemDatabase.Insights;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Observability;

/// <summary>
/// Every Npgsql pool the API creates (system pool, start-up probe, migration lock, workspace pools and admin
/// connections, health check, insights) is named by a label in its metrics, never by its connection string, and
/// every physical connection it opens or fails to open is logged with host, database and user, never the password.
/// The API runs as its own process (Production environment) so that the scrape shows its pools and no one else's:
/// in this test process other tests' connections would show up too.
/// </summary>
public sealed partial class PoolNameTests(PostgresServer server)
{
    [Fact]
    public async Task Every_pool_in_the_metrics_is_named_by_a_label_and_every_connection_is_logged_without_its_password()
    {
        // A database that does not exist yet: the API creates and migrates it (start-up probe, maintenance
        // connection, migration lock).
        var database = $"tcstudio_pools_{Guid.NewGuid():N}"[..30];
        var workspaceDatabase = database + "_ws";
        var apiPort = LocalPostgresCluster.FindFreePort();
        var metricsPort = LocalPostgresCluster.FindFreePort();
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        Process? api = null;
        try
        {
            api = ProcessRunner.StartDotnet(RepositoryPaths.ProjectOutput("TcStudio.Api"), [], new Dictionary<string, string?>
            {
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{apiPort}",
                ["ConnectionStrings__tcstudio"] = server.ConnectionString(database),
                ["Auth__SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)),
                ["Workspaces__SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
                ["Database__MigrateOnStartup"] = "true",
                ["Database__StartupTimeout"] = "00:00:30",
                ["Telemetry__Prometheus__Enabled"] = "true",
                ["Telemetry__Prometheus__Url"] = $"http://127.0.0.1:{metricsPort}",
                ["Workspaces__ConnectTimeout"] = "00:00:02",
            }, stdout, stderr);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}") };
            await WaitHealthyAsync(http, api, stdout, stderr);

            await AddAdminAsync(server.ConnectionString(database, pooling: false));
            await ApiFixture.SignInAsync(http, "pool-admin", AdminPassword);

            await HttpAssert.ReadAsync<DatabaseOverview>(await http.GetAsync("/api/admin/database/overview"));
            var (slug, _) = await ApiFixture.NewWorkspaceAsync(http, "pools", "Pools");
            await HttpAssert.JsonAsync(await http.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
                new { name = "dev", server = "local", databaseName = workspaceDatabase, create = true }), HttpStatusCode.Created);
            await WorkspaceApiFixture.CreateProcedureAsync(http, slug, "answer",
                "CREATE FUNCTION answer() RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$");
            await HttpAssert.JsonAsync(await http.PostAsync($"/api/workspaces/{slug}/procedures/answer/publish?env=dev", null));
            await HttpAssert.JsonAsync(await http.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/answer/execute?env=dev", new { }));

            using var scraper = new HttpClient();
            var scrape = await scraper.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
            var pools = PoolNameLabel().Matches(scrape).Select(m => m.Groups[1].Value).ToHashSet();

            Assert.All(pools, pool =>
            {
                Assert.DoesNotContain("=", pool);
                Assert.DoesNotContain("username", pool, StringComparison.OrdinalIgnoreCase);
            });
            Assert.Superset(new HashSet<string>
            {
                "tcstudio", "tcstudio-startup", "tcstudio-migration-lock",
                "tcstudio-workspaces-admin", "tcstudio-workspaces-deploy", "tcstudio-workspaces-exec",
            }, pools);

            // The connection log: each kind of connection, opened, with where and as whom.
            var log = stdout.ToString();
            var port = server.Admin.Port;
            Assert.Contains($"Opened a connection to PostgreSQL at 127.0.0.1:{port}/{database} as {server.Admin.Username}", log);
            Assert.Contains($"Opened a connection to PostgreSQL at 127.0.0.1:{port}/postgres as {server.Admin.Username}", log);
            Assert.Matches($@"Opened a connection to PostgreSQL at 127\.0\.0\.1:{port}/{workspaceDatabase} as tcws_\w+_owner", log);
            Assert.Matches($@"Opened a connection to PostgreSQL at 127\.0\.0\.1:{port}/{workspaceDatabase} as tcws_\w+_exec", log);
            if (!string.IsNullOrEmpty(server.Admin.Password)) Assert.DoesNotContain(server.Admin.Password, stdout.ToString() + stderr);
        }
        finally
        {
            if (api is { HasExited: false })
            {
                api.Kill(entireProcessTree: true);
                await api.WaitForExitAsync();
            }
            api?.Dispose();
            await server.DropDatabaseAsync(workspaceDatabase);
            await server.DropDatabaseAsync(database);
        }
    }

    private const string AdminPassword = "pool-admin-password";

    /// <summary>A system Admin, written straight to the database the API migrated (this test's own connection).</summary>
    private static async Task AddAdminAsync(string connectionString)
    {
        var options = new DbContextOptionsBuilder<TcStudioDbContext>()
            .UseNpgsql(connectionString, npgsql => npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable))
            .AddInterceptors(new AuditTimestampsInterceptor(TimeProvider.System));
        TcStudioDataExtensions.ConfigureContext(options);
        await using var db = new TcStudioDbContext(options.Options);
        var role = new Role { Name = Role.Admin, Description = "Administers the whole system." };
        db.Roles.Add(role);
        db.Users.Add(new User { Username = "pool-admin", PasswordHash = PasswordHashing.Hash(AdminPassword), Role = role });
        await db.SaveChangesAsync();
    }

    private static async Task WaitHealthyAsync(HttpClient http, Process api, StringBuilder stdout, StringBuilder stderr)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (api.HasExited)
            {
                // The message only once it exited and its output drained: the builders are appended to from other threads.
                api.WaitForExit();
                Assert.Fail($"the API exited with {api.ExitCode}\n{stdout}\n{stderr}");
            }
            try
            {
                if ((await http.GetAsync("/health")).StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), $"the API did not become healthy\n{stdout}\n{stderr}");
            await Task.Delay(200);
        }
    }

    [GeneratedRegex("db_client_connection_pool_name=\"([^\"]*)\"")]
    private static partial Regex PoolNameLabel();
}
