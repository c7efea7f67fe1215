using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Api.Auth;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Roles;
using TcStudio.Api.Workspaces;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase.Seeding;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>The API over a database of the test's choosing, configured like <see cref="ApiFixture"/>.</summary>
internal static class ApiHost
{
    public static WebApplicationFactory<Program> Over(string connectionString, params (string Key, string? Value)[] settings) =>
        new WebApplicationFactory<Program>().WithWebHostBuilder(web =>
        {
            web.UseEnvironment("Test");
            web.UseSetting("ConnectionStrings:tcstudio", connectionString);
            web.UseSetting("Auth:SigningKey", Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)));
            web.UseSetting("Seed:AdminPassword", ApiFixture.AdminPassword);
            web.UseSetting("Seed:UserPassword", ApiFixture.UserPassword);
            web.UseSetting("Database:StartupTimeout", "00:00:20");
            web.UseSetting("Workspaces:SecretKey", Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
            foreach (var (key, value) in settings) web.UseSetting(key, value);
        });

    public static async Task SeedAsync(this WebApplicationFactory<Program> factory)
    {
        await using var scope = factory.Services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<SystemSeeder>().SeedAsync();
    }

    public static async Task<HttpClient> AdminClientAsync(this WebApplicationFactory<Program> factory, string password = ApiFixture.AdminPassword)
    {
        return await ApiFixture.SignInAsync(factory.CreateClient(), "admin", password);
    }

    public static async Task AssertUnavailableAsync(HttpResponseMessage response)
    {
        await HttpAssert.ProblemAsync(response, HttpStatusCode.ServiceUnavailable);
        Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, $"Retry-After: {response.Headers.RetryAfter}");
    }
}

/// <summary>
/// After a deploy the worker may still be migrating: until the schema is complete, data endpoints answer 503 with
/// Retry-After (whoever calls, with or without a token), and serve as soon as the worker is done; with
/// Database:MigrateOnStartup=true the API migrates by itself.
/// </summary>
public sealed class SchemaReadinessTests(PostgresServer server)
{
    [Fact]
    public async Task Data_endpoints_answer_503_until_the_worker_has_migrated_then_serve()
    {
        var database = await server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var factory = ApiHost.Over(server.ConnectionString(database));
            using var anonymous = factory.CreateClient();

            var roles = await anonymous.GetAsync("/api/roles");
            await ApiHost.AssertUnavailableAsync(roles);
            Assert.Contains("migrat", await roles.Content.ReadAsStringAsync());
            await ApiHost.AssertUnavailableAsync(await anonymous.PostAsJsonAsync("/api/auth/token", new { username = "admin", password = "x" }));

            // A token issued before the deploy: its session cannot be checked against a half-built schema either.
            using var withToken = factory.CreateClient();
            var (token, _) = factory.Services.GetRequiredService<TokenIssuer>().Issue(Guid.CreateVersion7(), "admin", "Admin", Guid.NewGuid());
            withToken.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            await ApiHost.AssertUnavailableAsync(await withToken.GetAsync("/api/workspaces"));
            Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/alive")).StatusCode);

            // The worker migrates and seeds (Development passwords); the API notices without a restart.
            var worker = await MigrationWorkerRunner.RunAsync(server.ConnectionString(database));
            Assert.True(worker.ExitCode == 0, worker.ToString());
            var deadline = Stopwatch.StartNew();
            HttpResponseMessage after;
            do
            {
                await Task.Delay(250);
                after = await anonymous.GetAsync("/api/roles");
            } while (after.StatusCode == HttpStatusCode.ServiceUnavailable && deadline.Elapsed < TimeSpan.FromSeconds(20));
            await HttpAssert.ProblemAsync(after, HttpStatusCode.Unauthorized);

            using var admin = await factory.AdminClientAsync(SeedOptions.DevelopmentAdminPassword);
            var list = await HttpAssert.ReadAsync<PagedList<RoleResponse>>(await admin.GetAsync("/api/roles"));
            Assert.Equal(2, list.Items.Count);
        }
        finally
        {
            await server.DropDatabaseAsync(database);
        }
    }

    [Fact]
    public async Task With_migrate_on_startup_the_api_creates_and_migrates_its_database_itself()
    {
        var database = $"tcstudio_missing_{Guid.NewGuid():N}"[..40];
        try
        {
            await using var factory = ApiHost.Over(server.ConnectionString(database), ("Database:MigrateOnStartup", "true"));
            await factory.SeedAsync(); // starts the host, which migrates before it serves

            using var admin = await factory.AdminClientAsync();
            var roles = await HttpAssert.ReadAsync<PagedList<RoleResponse>>(await admin.GetAsync("/api/roles"));
            Assert.Equal(["Admin", "User"], roles.Items.Select(r => r.Name));
            var workspaces = await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(await admin.GetAsync("/api/workspaces"));
            Assert.Equal("twsbp", workspaces.Items[0].Slug);
        }
        finally
        {
            await server.DropDatabaseAsync(database);
        }
    }
}

/// <summary>Configuration mistakes stop the API process at once: exit code 2 and one line naming the key.</summary>
public sealed class ApiConfigurationTests
{
    private static string ApiDll => RepositoryPaths.ProjectOutput("TcStudio.Api");

    private static Dictionary<string, string?> Environment(string environment) => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = environment,
        ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
        ["Auth__SigningKey"] = null,
        ["Workspaces__SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
        ["Database__StartupTimeout"] = "00:00:05",
    };

    [Fact]
    public async Task A_missing_connection_string_exits_2_with_one_line_naming_the_key()
    {
        var environment = Environment("Production");
        environment["Auth__SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));

        var result = await ProcessRunner.RunDotnetAsync(ApiDll, [], environment, TimeSpan.FromSeconds(60));

        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains("ConnectionStrings:tcstudio", line);
    }

    [Fact]
    public async Task A_missing_signing_key_outside_development_exits_2_with_one_line_naming_the_key()
    {
        var environment = Environment("Production");
        environment["ConnectionStrings__tcstudio"] = "Host=127.0.0.1;Port=1;Database=tc_studio;Username=u;Password=never-printed";

        var result = await ProcessRunner.RunDotnetAsync(ApiDll, [], environment, TimeSpan.FromSeconds(60));

        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains("Auth:SigningKey", line);
        Assert.DoesNotContain("never-printed", result.AllOutput);
    }

    [Fact]
    public async Task A_missing_workspace_secret_key_outside_development_exits_2_with_one_line_naming_the_key()
    {
        var environment = Environment("Production");
        environment["ConnectionStrings__tcstudio"] = "Host=127.0.0.1;Port=1;Database=tc_studio;Username=u;Password=never-printed";
        environment["Auth__SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));
        environment["Workspaces__SecretKey"] = null;

        var result = await ProcessRunner.RunDotnetAsync(ApiDll, [], environment, TimeSpan.FromSeconds(60));

        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains("Workspaces:SecretKey", line);
        Assert.DoesNotContain("never-printed", result.AllOutput);
    }

    [Theory]
    [InlineData("ForwardedHeaders__KnownProxies__0", "proxy.example", "ForwardedHeaders:KnownProxies")]
    [InlineData("ForwardedHeaders__KnownNetworks", "10.0.0.0/99", "ForwardedHeaders:KnownNetworks")]
    [InlineData("RateLimit__PermitsPerSecondPerUser", "0", "RateLimit:PermitsPerSecondPerUser")]
    [InlineData("Telemetry__Prometheus__Url", "https://0.0.0.0:9464", "Telemetry:Prometheus:Url")]
    public async Task An_unusable_security_setting_exits_2_with_one_line_naming_the_key(string variable, string value, string key)
    {
        var environment = Environment("Production");
        environment["Auth__SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));
        environment["ConnectionStrings__tcstudio"] = "Host=127.0.0.1;Port=1;Database=tc_studio;Username=u;Password=never-printed";
        environment[variable] = value;

        var result = await ProcessRunner.RunDotnetAsync(ApiDll, [], environment, TimeSpan.FromSeconds(60));

        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains(key, line);
    }
}

/// <summary>
/// The database goes away under a running API: requests answer 503 with Retry-After (never a 500 or a hang without
/// end), and the API serves again once the database is back, without a restart. A private cluster, so stopping it
/// disturbs no other test.
/// </summary>
public sealed class DatabaseOutageTests
{
    [Fact]
    public async Task Requests_answer_503_while_the_database_is_down_and_200_once_it_is_back()
    {
        var cluster = await PostgresServer.StartPrivateClusterAsync(port: LocalPostgresCluster.FindFreePort());
        try
        {
            await using var factory = ApiHost.Over(cluster.ConnectionString("tc_studio"), ("Database:MigrateOnStartup", "true"));
            await factory.SeedAsync();
            using var admin = await factory.AdminClientAsync();
            await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(await admin.GetAsync("/api/workspaces"));

            await cluster.StopAsync();
            var watch = Stopwatch.StartNew();
            await ApiHost.AssertUnavailableAsync(await admin.GetAsync("/api/workspaces"));
            await ApiHost.AssertUnavailableAsync(await admin.GetAsync("/api/workspaces/twsbp/activities"));
            TestContext.Current.TestOutputHelper?.WriteLine($"two requests during the outage took {watch.Elapsed.TotalSeconds:0.0} s");
            // A few short retries (Database:MaxRetryCount/MaxRetryDelay), not EF's minute-long default: callers hear
            // "try again" before their own timeouts give up on us.
            Assert.InRange(watch.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(40));
            using (var anonymous = factory.CreateClient())
            {
                await ApiHost.AssertUnavailableAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
                    new { username = "admin", password = ApiFixture.AdminPassword }));
                Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/alive")).StatusCode);
            }

            await cluster.StartAsync();
            var back = await admin.GetAsync("/api/workspaces");
            var body = await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(back);
            Assert.Equal("twsbp", body.Items[0].Slug);
        }
        finally
        {
            await cluster.DestroyAsync();
        }
    }
}
