using System.Net;
using Npgsql;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.WorkspaceDatabases;

public sealed class ProvisionerFixture(PostgresServer server) : WorkspaceApiFixture(server);

/// <summary>
/// The credential the API holds for a PostgreSQL server (the provisioner login the bootstrap creates) is not a
/// stepping stone: with CREATEDB and EXECUTE on the provisioning functions only, it cannot grant
/// pg_execute_server_program (which CREATEROLE could, on PostgreSQL 15), cannot create a superuser or any role outside
/// the workspace prefix, directly or through the functions, and cannot drop or take a database it does not own.
/// </summary>
public sealed class ProvisionerPrivilegeTests(ProvisionerFixture api) : IClassFixture<ProvisionerFixture>
{
    private async Task<T?> AsProvisioner<T>(string sql, string? database = null, params object[] parameters)
    {
        await using var connection = new NpgsqlConnection(api.ProvisionerConnectionString(database));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters) command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        return (T?)await command.ExecuteScalarAsync();
    }

    private async Task Refused(string sqlState, string sql, string? database = null, params object[] parameters)
    {
        var refused = await Assert.ThrowsAsync<PostgresException>(() => AsProvisioner<object>(sql, database, parameters));
        Assert.True(refused.SqlState == sqlState, $"{sql}: expected {sqlState}, got {refused.SqlState} {refused.MessageText}");
    }

    private static string NewRoleName(string suffix = "owner") => $"tcws_{Guid.NewGuid():N}_{suffix}";

    private async Task<string> AnEnvironmentOwnerRoleAsync()
    {
        using var admin = await api.AdminAsync();
        var (_, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "priv");
        return await api.WorkspaceScalarAsync<string>(database,
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()");
    }

    [Fact]
    public async Task The_provisioner_has_CREATEDB_and_nothing_else()
    {
        Assert.Equal("t f f f f f", (await api.WorkspaceScalarAsync<string>("postgres", $"""
            SELECT concat_ws(' ', rolcreatedb, rolsuper, rolcreaterole, rolreplication, rolbypassrls,
                   EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname LIKE 'pg\_%'))
            FROM pg_roles r WHERE rolname = '{api.ProvisionerLogin}'
            """)).Replace("true", "t").Replace("false", "f"));
        // The API really runs with it: server 'local' is this login.
        var registry = api.Factory.Services.GetService(typeof(WorkspaceServerRegistry)) as WorkspaceServerRegistry;
        Assert.Equal(api.ProvisionerLogin, new NpgsqlConnectionStringBuilder(registry!.Find("local")!.ConnectionString).Username);
    }

    [Fact]
    public async Task It_cannot_grant_server_program_or_file_rights_nor_raise_any_role()
    {
        var owner = await AnEnvironmentOwnerRoleAsync(); // a role the provisioner is a member of
        await Refused("42501", $"GRANT pg_execute_server_program TO \"{api.ProvisionerLogin}\"");
        await Refused("42501", $"GRANT pg_execute_server_program TO \"{owner}\"");
        await Refused("42501", $"GRANT pg_read_server_files, pg_write_server_files TO \"{api.ProvisionerLogin}\"");
        await Refused("42501", "COPY (SELECT 1) TO PROGRAM 'true'");
        await Refused("42501", $"ALTER ROLE \"{api.ProvisionerLogin}\" SUPERUSER");
        await Refused("42501", $"ALTER ROLE \"{api.ProvisionerLogin}\" CREATEROLE");
        await Refused("42501", $"ALTER ROLE \"{owner}\" SUPERUSER");
        await Refused("42501", $"ALTER ROLE \"{owner}\" CREATEDB");
        await Refused("42501", "SET ROLE postgres");
        await Refused("42501", $"GRANT \"{owner}\" TO \"{api.ProvisionerLogin}\" WITH ADMIN OPTION"); // it may not hand workspace roles on
    }

    [Fact]
    public async Task It_cannot_create_a_superuser_or_a_role_outside_the_prefix_directly_or_through_the_functions()
    {
        var verifier = TcStudio.SystemDatabase.Security.ScramVerifier.Compute(WorkspaceSecrets.NewPassword());
        await Refused("42501", "CREATE ROLE evil");
        await Refused("42501", "CREATE ROLE evil SUPERUSER");
        await Refused("42501", $"CREATE ROLE \"{NewRoleName()}\"");

        const string Create = $"SELECT {PostgresProvisioning.Schema}.create_workspace_role($1, $2, $3, $4, $5, $6)";
        foreach (var name in new[] { "evil", "postgres", api.ProvisionerLogin, "tcws_x_owner", NewRoleName("admin"),
            NewRoleName() + "\"; DROP ROLE postgres; --",
                     NewRoleName().ToUpperInvariant() })
        {
            await Refused("22023", Create, null, name, verifier, 5, 60_000, 1_048_576, 16_384);
        }
        await Refused("22023", Create, null, NewRoleName(), "hunter2", 5, 60_000, 1_048_576, 16_384); // a password, not a verifier
        await Refused("22023", Create, null, NewRoleName(), verifier, 0, 60_000, 1_048_576, 16_384);
        await Refused("22023", Create, null, NewRoleName(), verifier, 100_000, 60_000, 1_048_576, 16_384);
        // Role settings within bounds only (temp_file_limit is a superuser setting: 0 or -1 would lift it).
        await Refused("22023", Create, null, NewRoleName(), verifier, 5, 0, 1_048_576, 16_384);
        await Refused("22023", Create, null, NewRoleName(), verifier, 5, 60_000, -1, 16_384);
        await Refused("22023", Create, null, NewRoleName(), verifier, 5, 60_000, 1_048_576, int.MaxValue);

        // What the function does make: a login with every privilege attribute off, a connection limit, a member of nothing.
        var made = NewRoleName();
        try
        {
            await AsProvisioner<object>(Create, null, made, verifier, 5, 60_000, 1_048_576, 16_384);
            Assert.Equal("t f f f f f f 5 0", (await api.WorkspaceScalarAsync<string>("postgres", $"""
                SELECT concat_ws(' ', rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolreplication, rolbypassrls, rolconnlimit,
                       (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid))
                FROM pg_roles r WHERE rolname = '{made}'
                """)).Replace("true", "t").Replace("false", "f"));
            Assert.True(await AsProvisioner<bool>($"SELECT pg_has_role(current_user, '{made}', 'MEMBER')"));
            Assert.Equal("statement_timeout=60000ms temp_file_limit=1048576kB work_mem=16384kB",
                await api.WorkspaceScalarAsync<string>("postgres", $"""
                SELECT string_agg(setting, ' ' ORDER BY setting) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole,
                       unnest(s.setconfig) AS setting WHERE r.rolname = '{made}' AND s.setdatabase = 0
                """));
            await Refused("42501", $"DROP ROLE \"{made}\""); // only through the function
            Assert.True(await AsProvisioner<bool>($"SELECT {PostgresProvisioning.Schema}.drop_workspace_role($1)", null, made));
        }
        finally
        {
            await api.Server.ExecuteAsync($"DROP ROLE IF EXISTS \"{made}\"");
        }

        // A role in the prefix that TC Studio did not make (here a superuser someone named like one) is left alone.
        var planted = NewRoleName();
        await api.Server.ExecuteAsync($"CREATE ROLE \"{planted}\" SUPERUSER");
        try
        {
            await Refused("42710", Create, null, planted, verifier, 5, 60_000, 1_048_576, 16_384);
            await Refused("42501", $"SELECT {PostgresProvisioning.Schema}.grant_workspace_role($1)", null, planted);
            await Refused("42501", $"SELECT {PostgresProvisioning.Schema}.drop_workspace_role($1)", null, planted);
            await Refused("22023", $"SELECT {PostgresProvisioning.Schema}.drop_workspace_role($1)", null, "postgres");
            await Refused("22023", $"SELECT {PostgresProvisioning.Schema}.grant_workspace_role($1)", null, "pg_execute_server_program");
            Assert.True(await api.WorkspaceScalarAsync<bool>("postgres", $"SELECT rolsuper FROM pg_roles WHERE rolname = '{planted}'"));
            Assert.False(await AsProvisioner<bool>($"SELECT pg_has_role(current_user, '{planted}', 'MEMBER')"));
        }
        finally
        {
            await api.Server.ExecuteAsync($"DROP ROLE IF EXISTS \"{planted}\"");
        }

        // The registry behind the functions is not the provisioner's to edit.
        await Refused("42501", $"INSERT INTO {PostgresProvisioning.Schema}.workspace_roles (role_name) VALUES ('postgres')");
    }

    [Fact]
    public async Task It_cannot_drop_take_or_create_for_others_a_database_it_does_not_own()
    {
        var foreign = api.NewDatabaseName("not_ours");
        await api.Server.ExecuteAsync($"CREATE DATABASE {foreign}");
        await Refused("42501", $"DROP DATABASE {foreign}", "postgres");
        await Refused("42501", $"DROP DATABASE {foreign} WITH (FORCE)", "postgres");
        await Refused("42501", $"DROP DATABASE {api.DatabaseName}", "postgres"); // the system database itself
        await Refused("42501", $"ALTER DATABASE {foreign} OWNER TO \"{api.ProvisionerLogin}\"", "postgres");
        await Refused("42501", $"ALTER DATABASE {foreign} RENAME TO {foreign}_x", "postgres");
        await Refused("42501", $"CREATE DATABASE {foreign}_for_postgres OWNER postgres", "postgres");
        Assert.Equal(2L, await api.WorkspaceScalarAsync<long>("postgres",
            $"SELECT count(*) FROM pg_database WHERE datname IN ('{foreign}', '{api.DatabaseName}')"));

        // And through the API, a drop never reaches a database whose marker does not name the environment.
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "priv-drop");
        await api.WorkspaceExecuteAsync(database, $"UPDATE tcstudio_ownership.marker SET workspace_id = '{Guid.CreateVersion7()}'");
        await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true"), HttpStatusCode.Conflict);
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
    }
}
