using System.Text.Json;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

/// <summary>
/// The deployment manifest azd reads: <c>TcStudio.AppHost --publisher manifest --output-path …</c>, run as a process the
/// way azd runs it. Nothing is started; no secret value may appear in it.
/// </summary>
public sealed class ManifestTests
{
    private static readonly Dictionary<string, string> Sentinels = new()
    {
        // Values a developer may have in configuration: none of them may be written into the file.
        ["Parameters__seed-admin-password"] = "sentinel-admin-password-5f1c",
        ["Parameters__seed-user-password"] = "sentinel-user-password-8a2d",
        ["Parameters__api-signing-key"] = "sentinel-signing-key-0123456789abcdef0123456789abcdef",
        ["Parameters__postgres-password"] = "sentinel-postgres-password-77e1",
        ["Parameters__sql-password"] = "sentinel-sql-password-Aa1-9c3b",
        ["ConnectionStrings__postgres"] = "Host=db.example;Username=postgres;Password=sentinel-server-password-4e6f",
    };

    [Fact]
    public async Task The_manifest_has_postgres_as_a_container_its_database_the_two_projects_and_every_secret_as_a_parameter()
    {
        var (manifest, text) = await PublishAsync(new() { ["AppHost__SqlServer__Mode"] = "container" });
        var resources = manifest.GetProperty("resources");

        var postgres = resources.GetProperty("postgres");
        Assert.Equal("container.v0", Type(postgres));
        Assert.StartsWith("docker.io/library/postgres:", postgres.GetProperty("image").GetString());
        Assert.Contains("shared_preload_libraries=pg_stat_statements", Strings(postgres.GetProperty("args")));
        Assert.Contains(postgres.GetProperty("volumes").EnumerateArray(),
            v => v.GetProperty("target").GetString()!.StartsWith("/var/lib/postgresql"));
        Assert.Equal("{postgres-password.value}", postgres.GetProperty("env").GetProperty("POSTGRES_PASSWORD").GetString());

        var tcstudio = resources.GetProperty("tcstudio");
        Assert.Equal("{postgres.connectionString};Database=tc_studio", tcstudio.GetProperty("connectionString").GetString());

        var sql = resources.GetProperty("sql");
        Assert.Equal("container.v0", Type(sql));
        Assert.Equal("mcr.microsoft.com/mssql/server:2022-latest", sql.GetProperty("image").GetString());
        Assert.Equal("{sql-password.value}", sql.GetProperty("env").GetProperty("MSSQL_SA_PASSWORD").GetString());
        Assert.Contains("Password={sql-password.value}", sql.GetProperty("connectionString").GetString());
        Assert.Equal(1433, sql.GetProperty("bindings").GetProperty("tcp").GetProperty("targetPort").GetInt32());

        var worker = resources.GetProperty("migration-worker");
        Assert.Equal("project.v0", Type(worker));
        Assert.EndsWith("TcStudio.MigrationWorker/TcStudio.MigrationWorker.csproj", worker.GetProperty("path").GetString());
        var workerEnv = worker.GetProperty("env");
        // Each service signs in as its own role; only the worker gets the server's admin string (for its roles step).
        Assert.Equal(RoleConnectionString("tc_studio_owner", "tcstudio-owner-password"),
            workerEnv.GetProperty("ConnectionStrings__tcstudio").GetString());
        Assert.Equal("{postgres.connectionString}", workerEnv.GetProperty("ConnectionStrings__postgres").GetString());
        Assert.Equal("{tcstudio-app-password.value}", workerEnv.GetProperty("SystemRoles__AppPassword").GetString());
        Assert.Equal("{tcstudio-backup-password.value}", workerEnv.GetProperty("SystemRoles__BackupPassword").GetString());
        Assert.Equal(RoleConnectionString("tc_studio_provisioner", "tcstudio-provisioner-password"),
            workerEnv.GetProperty("WorkspaceServers__local__ConnectionString").GetString());
        Assert.Equal("{sql.connectionString}", workerEnv.GetProperty("ConnectionStrings__sql").GetString());
        Assert.Equal("{seed-admin-password.value}", workerEnv.GetProperty("Seed__AdminPassword").GetString());
        Assert.Equal("{seed-user-password.value}", workerEnv.GetProperty("Seed__UserPassword").GetString());

        var api = resources.GetProperty("api");
        Assert.Equal("project.v0", Type(api));
        var apiEnv = api.GetProperty("env");
        Assert.Equal(RoleConnectionString("tc_studio_app", "tcstudio-app-password"), apiEnv.GetProperty("ConnectionStrings__tcstudio").GetString());
        Assert.Equal(RoleConnectionString("tc_studio_provisioner", "tcstudio-provisioner-password"),
            apiEnv.GetProperty("WorkspaceServers__local__ConnectionString").GetString());
        // The superuser's credential never reaches the API.
        Assert.DoesNotContain(apiEnv.EnumerateObject(), p => p.Value.ToString().Contains("postgres.connectionString")
            || p.Value.ToString().Contains("postgres-password"));
        Assert.Equal("{sql.connectionString}", apiEnv.GetProperty("ConnectionStrings__sql").GetString());
        Assert.Equal("{api-signing-key.value}", apiEnv.GetProperty("Auth__SigningKey").GetString());
        Assert.True(api.GetProperty("bindings").GetProperty("http").GetProperty("external").GetBoolean());
        // The services get the connection strings only, not the password again in TCSTUDIO_PASSWORD and friends.
        Assert.DoesNotContain(apiEnv.EnumerateObject(), p => p.Name.StartsWith("TCSTUDIO_", StringComparison.Ordinal));

        // Every secret is a secret parameter; the ones the application needs are required inputs (no default), the
        // server passwords are generated at deployment.
        foreach (var name in new[] { "api-signing-key", "seed-admin-password", "seed-user-password" })
        {
            var input = Input(resources, name);
            Assert.True(input.GetProperty("secret").GetBoolean(), name);
            Assert.False(input.TryGetProperty("default", out _), $"{name} must be a required input");
        }
        foreach (var name in new[] { "postgres-password", "sql-password", "tcstudio-owner-password", "tcstudio-app-password",
                     "tcstudio-backup-password", "tcstudio-provisioner-password" })
        {
            var input = Input(resources, name);
            Assert.True(input.GetProperty("secret").GetBoolean(), name);
            Assert.True(input.GetProperty("default").TryGetProperty("generate", out _), name);
        }
        foreach (var secret in Sentinels.Values) Assert.DoesNotContain(secret.Split("Password=")[^1], text);
        // Development-only resources and values stay out of the deployment.
        Assert.DoesNotContain("localhost", text);
    }

    [Fact]
    public async Task Without_a_sql_server_configured_the_manifest_has_no_sql_resource()
    {
        var (manifest, _) = await PublishAsync(new() { ["AppHost__SqlServer__Mode"] = "auto" });
        var resources = manifest.GetProperty("resources");

        Assert.False(resources.TryGetProperty("sql", out _));
        Assert.False(resources.GetProperty("api").GetProperty("env").TryGetProperty("ConnectionStrings__sql", out _));
        Assert.Equal("container.v0", Type(resources.GetProperty("postgres")));
    }

    private static async Task<(JsonElement Manifest, string Text)> PublishAsync(Dictionary<string, string?> environment)
    {
        var directory = Path.Combine(Path.GetTempPath(), "tcstudio-tests", "manifest-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            var output = Path.Combine(directory, "aspire-manifest.json");
            foreach (var (key, value) in Sentinels) environment[key] = value;
            // As azd runs it: through the launch profile, in Development (user secrets loaded, values above them).
            environment["DOTNET_ENVIRONMENT"] = "Development";
            var result = await ProcessRunner.RunDotnetAsync(RepositoryPaths.ProjectOutput("TcStudio.AppHost"),
                ["--publisher", "manifest", "--output-path", output], environment, TimeSpan.FromMinutes(3));
            Assert.True(result.ExitCode == 0, result.ToString());
            var text = await File.ReadAllTextAsync(output);
            using var document = JsonDocument.Parse(text);
            return (document.RootElement.Clone(), text);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static string RoleConnectionString(string role, string passwordParameter) =>
        $"Host={{postgres.bindings.tcp.host}};Port={{postgres.bindings.tcp.port}};Username={role};"
        + $"Password={{{passwordParameter}.value}};Database=tc_studio";

    private static string? Type(JsonElement resource) => resource.GetProperty("type").GetString();

    private static IEnumerable<string?> Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString());

    private static JsonElement Input(JsonElement resources, string parameter)
    {
        var resource = resources.GetProperty(parameter);
        Assert.Equal("parameter.v0", Type(resource));
        return resource.GetProperty("inputs").GetProperty("value");
    }
}
