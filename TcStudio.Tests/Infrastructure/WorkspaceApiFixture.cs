using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.SystemDatabase.Entities;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// The API over its own system database, with workspace databases on the same (shared) test server as server
/// 'local', reached — like production — through a provisioner login that is not a superuser: LOGIN CREATEDB and
/// EXECUTE on the provisioning functions, created by the worker's own bootstrap code before the API starts. Each test
/// makes its own workspace and environments through the API; databases and roles it created are dropped at the end.
/// </summary>
public class WorkspaceApiFixture(PostgresServer server) : ApiFixture(server)
{
    private readonly List<string> _databases = [];
    private static int _counter;

    /// <summary>The API's deploy login for server 'local' (unique per fixture: roles are server-wide).</summary>
    public string ProvisionerLogin => $"tcprov_{DatabaseName}";
    public string ProvisionerPassword { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));

    /// <summary>Server 'local' as the API sees it: the provisioner's connection string to the system database.</summary>
    public string ProvisionerConnectionString(string? database = null) =>
        new NpgsqlConnectionStringBuilder(Server.ConnectionString(database ?? DatabaseName))
    {
        Username = ProvisionerLogin,
        Password = ProvisionerPassword,
        Pooling = false,
    }.ConnectionString;

    protected override async Task BeforeApiStartsAsync()
    {
        var local = new WorkspaceServer(WorkspaceServerRegistry.LocalName, "postgres", ProvisionerConnectionString(), null);
        await WorkspaceServerBootstrap.RunAsync(local, Server.ConnectionString(DatabaseName, pooling: false), createProvisioner: true,
            CancellationToken.None);
    }

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("WorkspaceServers:local:ConnectionString", ProvisionerConnectionString()),
        new("Workspaces:ConnectTimeout", "00:00:02"),
        new("Workspaces:RetryBaseDelay", "00:00:00.050"),
        new("Workspaces:CircuitBreak", "00:00:01"),
        new("Workspaces:CircuitMaxBreak", "00:00:02"),
        new("Seed:DevDatabaseName", DatabaseName + "_twsbp_dev"),
        .. ExtraSettings,
    ];

    protected virtual IEnumerable<KeyValuePair<string, string?>> ExtraSettings => [];

    /// <summary>A database name no other test uses (dropped when the fixture goes).</summary>
    public string NewDatabaseName(string purpose)
    {
        var name = $"{DatabaseName}_{purpose}_{Interlocked.Increment(ref _counter)}";
        lock (_databases) _databases.Add(name);
        return name;
    }

    /// <summary>A workspace owned by the admin client, with environment <paramref name="environment"/> on a new database.</summary>
    public async Task<(string Slug, string Database)> NewWorkspaceWithEnvironmentAsync(HttpClient owner, string prefix, string environment = "dev")
    {
        var slug = NewSlug(prefix);
        var created = await owner.PostAsJsonAsync("/api/workspaces", new { name = prefix, slug });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var database = NewDatabaseName(prefix.Replace('-', '_'));
        var response = await owner.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = environment, server = "local", databaseName = database, create = true });
        await HttpAssert.JsonAsync(response, HttpStatusCode.Created);
        return (slug, database);
    }

    public async Task<T> WorkspaceScalarAsync<T>(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(Server.ConnectionString(database, pooling: false));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async Task WorkspaceExecuteAsync(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(Server.ConnectionString(database, pooling: false));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// Gives an environment a test inserted by hand the claim the API would have written (roles named after it, new
    /// passwords kept with the API's key), so the API will use it.
    /// </summary>
    public async Task ClaimByHandAsync(string slug, string environment)
    {
        await using var scope = Factory.Services.CreateAsyncScope();
        await using var db = CreateDbContext(); // the fixture's superuser: arranging data is not the API's work
        var row = await db.WorkspaceEnvironments.Join(db.Workspaces, e => e.WorkspaceId, w => w.Id, (e, w) => new { e, w.Slug })
            .Where(x => x.Slug == slug && x.e.Name == environment).Select(x => x.e).SingleAsync();
        var server = scope.ServiceProvider.GetRequiredService<WorkspaceServerRegistry>().Find(row.Server)!;
        var claim = new WorkspaceDatabase
        {
            ServerIdentity = server.Identity, Server = server.Name, Provider = row.Provider, DatabaseName = row.DatabaseName,
            WorkspaceId = row.WorkspaceId, EnvironmentId = row.Id,
        };
        if (row.Provider == WorkspaceProviders.Postgres)
        {
            scope.ServiceProvider.GetRequiredService<WorkspaceOwnershipStore>().IssueRoles(claim, row.Id);
        }
        db.WorkspaceDatabases.Add(claim);
        await db.SaveChangesAsync();
    }

    public static async Task<JsonElement> CreateProcedureAsync(HttpClient client, string slug, string name, string sql)
    {
        var response = await client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name, sql });
        return await HttpAssert.JsonAsync(response, HttpStatusCode.Created);
    }

    public override async ValueTask DisposeAsync()
    {
        // The roles the provisioning functions made for this fixture's environments (server-wide, unlike databases).
        var roles = new List<string>();
        try
        {
            roles = await ColumnAsync($"SELECT role_name FROM {PostgresProvisioning.Schema}.workspace_roles");
        }
        catch (PostgresException)
        {
            // never bootstrapped
        }
        await base.DisposeAsync();
        List<string> databases;
        lock (_databases) databases = [.. _databases];
        foreach (var database in databases) await Server.DropDatabaseAsync(database);
        foreach (var role in roles.Append(ProvisionerLogin))
        {
            try
            {
                await Server.ExecuteAsync($"DROP ROLE IF EXISTS \"{role}\"");
            }
            catch (PostgresException)
            {
                // still owns a database a test left behind on purpose; the throwaway cluster goes anyway
            }
        }
    }
}
