using System.Security.Cryptography;
using Npgsql;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>
/// `workspaces bootstrap`, the only use of a server's admin credential: it installs the provisioning functions and
/// creates the provisioner login; afterwards the worker (and the API) provision workspaces with that login alone.
/// </summary>
public sealed class WorkspaceBootstrapVerbTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>, IAsyncLifetime
{
    private readonly string _password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
    private string Provisioner => $"tcprov_{database.DatabaseName}_w";
    private string DevDatabase => MigrationWorkerRunner.DevDatabaseName(database.ConnectionString)!;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        var roles = await WorkspaceRoles.RegisteredAsync(database);
        await database.Server.DropDatabaseAsync(DevDatabase);
        await WorkspaceRoles.DropAsync(database.Server, [.. roles, Provisioner]);
    }

    private Dictionary<string, string?> Environment(bool withAdmin = true)
    {
        var environment = MigrationWorkerRunner.Environment(database.ConnectionString);
        environment["WorkspaceServers__local__ConnectionString"] = new NpgsqlConnectionStringBuilder(database.ConnectionString)
        {
            Username = Provisioner, Password = _password,
        }.ConnectionString;
        if (withAdmin) environment["ConnectionStrings__postgres"] = database.Server.ConnectionString("postgres");
        return environment;
    }

    private Task<string> RoleAttributes() => database.ScalarAsync<string>(
        "SELECT concat_ws(' ', rolcanlogin, rolcreatedb, rolcreaterole, rolsuper) FROM pg_roles WHERE rolname = @r", ("r", Provisioner));

    [Fact]
    public async Task Bootstrap_prepares_a_server_so_the_worker_provisions_with_a_CREATEDB_login_alone()
    {
        var noAdmin = await MigrationWorkerRunner.RunAsync(Environment(withAdmin: false), "workspaces", "bootstrap", "--server", "local");
        Assert.True(noAdmin.ExitCode == 2, noAdmin.ToString());
        Assert.Contains("has no admin connection string: set ConnectionStrings:postgres", noAdmin.StandardError);
        var unknown = await MigrationWorkerRunner.RunAsync(Environment(), "workspaces", "bootstrap", "--server", "nope");
        Assert.True(unknown.ExitCode == 2, unknown.ToString());
        Assert.Contains("No workspace server 'nope'", unknown.StandardError);

        var first = await MigrationWorkerRunner.RunAsync(Environment(), "workspaces", "bootstrap", "--create-provisioner");
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Contains($"installed the provisioning functions ({PostgresProvisioning.Schema} v{PostgresProvisioning.Version} "
            + $"in database {database.DatabaseName})", first.StandardOutput);
        Assert.Contains($"created the provisioner login '{Provisioner}' (LOGIN CREATEDB, nothing else)", first.StandardOutput);
        Assert.Contains("workspaces bootstrap: 1 ok, 0 failed", first.StandardOutput);
        Assert.DoesNotContain(_password, first.AllOutput);
        Assert.Equal("t t f f", await RoleAttributes()); // login, CREATEDB; no CREATEROLE, no SUPERUSER

        var again = await MigrationWorkerRunner.RunAsync(Environment(), "workspaces", "bootstrap");
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("provisioning functions up to date", again.StandardOutput);
        Assert.Contains($"checked the provisioner login '{Provisioner}'", again.StandardOutput);

        // The default run bootstraps, seeds, and creates twsbp/dev through the provisioner: its own roles own it.
        var run = await MigrationWorkerRunner.RunAsync(Environment(), []);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("workspaces bootstrap: 1 ok, 0 failed", run.StandardOutput);
        Assert.Contains($"created database {DevDatabase}", run.StandardOutput);
        Assert.Contains("workspaces migrate: 1 ok, 0 failed", run.StandardOutput);
        var devId = await database.ScalarAsync<Guid>("SELECT id FROM workspace_environments WHERE name = 'dev'");
        await using (var connection = new NpgsqlConnection(database.Server.ConnectionString(DevDatabase, pooling: false)))
        {
            await connection.OpenAsync();
            await using var owner = new NpgsqlCommand(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()", connection);
            Assert.Equal(PostgresWorkspaceRoles.Owner(devId), await owner.ExecuteScalarAsync());
        }
        Assert.Equal("t t f f", await RoleAttributes()); // login, CREATEDB; no CREATEROLE, no SUPERUSER

        // A provisioner given CREATEROLE by hand is called out: on PostgreSQL 15 that is as good as superuser.
        await database.Server.ExecuteAsync($"ALTER ROLE \"{Provisioner}\" CREATEROLE");
        var warned = await MigrationWorkerRunner.RunAsync(Environment(), "workspaces", "bootstrap");
        Assert.True(warned.ExitCode == 0, warned.ToString());
        Assert.Contains($"warning: '{Provisioner}' has CREATEROLE", warned.StandardOutput);
        await database.Server.ExecuteAsync($"ALTER ROLE \"{Provisioner}\" NOCREATEROLE");
    }
}
