using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Npgsql;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// The API over its own system database, with workspace databases on the same (shared) test server as server
/// 'local'. Each test makes its own workspace and environments through the API; databases it created are dropped
/// at the end.
/// </summary>
public class WorkspaceApiFixture(PostgresServer server) : ApiFixture(server)
{
    private readonly List<string> _databases = [];
    private static int _counter;

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Workspaces:ConnectTimeoutSeconds", "2"),
        new("Workspaces:RetryBaseDelayMilliseconds", "50"),
        new("Workspaces:CircuitBreakSeconds", "1"),
        new("Workspaces:CircuitMaxBreakSeconds", "2"),
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

    public static string NewSlug(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..20];

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

    public static async Task<JsonElement> CreateProcedureAsync(HttpClient client, string slug, string name, string sql)
    {
        var response = await client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name, sql });
        return await HttpAssert.JsonAsync(response, HttpStatusCode.Created);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        List<string> databases;
        lock (_databases) databases = [.. _databases];
        foreach (var database in databases) await Server.DropDatabaseAsync(database);
    }
}
