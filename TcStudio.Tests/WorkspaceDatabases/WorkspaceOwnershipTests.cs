using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.Api.Environments;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Procedures;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.WorkspaceDatabases;

public sealed class OwnershipFixture(PostgresServer server) : WorkspaceApiFixture(server);

/// <summary>
/// Issue 9's reproductions, through the real API on a real server: a plain User (who may create workspaces and
/// environments) tries to attach another workspace's orphaned database, another application's database, and to drop
/// a database that is not (or no longer) their environment's. A workspace database belongs to its workspace.
/// </summary>
public sealed class WorkspaceOwnershipTests(OwnershipFixture api) : IClassFixture<OwnershipFixture>
{
    private static int _users;

    private async Task<(HttpClient Client, string Slug)> AttackerAsync()
    {
        var client = await api.NewUserClientAsync($"mallory{Interlocked.Increment(ref _users)}");
        return (client, (await ApiFixture.NewWorkspaceAsync(client, "attacker")).Slug);
    }

    private static Task<HttpResponseMessage> CreateEnvironment(HttpClient client, string slug, string database, bool? create = true,
        string name = "dev") =>
        client.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            create is null
                ? new { name, server = "local", databaseName = database }
                : (object)new { name, server = "local", databaseName = database, create });

    private Task<string> OwnerOf(string database) =>
        api.WorkspaceScalarAsync<string>(database, "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()");

    private Task<Guid> EnvironmentIdAsync(string slug, string environment) =>
        api.ScalarAsync<Guid>(
            "SELECT e.id FROM workspace_environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.slug = @s AND e.name = @e",
            ("s", slug), ("e", environment));

    private Task<long> EnvironmentCountAsync(string slug) =>
        api.ScalarAsync<long>(
            "SELECT count(*) FROM workspace_environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.slug = @s", ("s", slug));

    /// <summary>Every attach a user could try: attach (create=false), create over it (a claimed name in any case), adopt.</summary>
    private async Task RefusedToUserAsync(HttpClient user, string slug, string database, bool claimed = true)
    {
        var attach = await HttpAssert.ProblemAsync(await CreateEnvironment(user, slug, database, create: false), HttpStatusCode.Forbidden);
        Assert.Contains("system Admins", attach.GetProperty("detail").GetString());
        foreach (var name in claimed ? new[] { database, database.ToUpperInvariant() } : [database])
        {
            var create = await HttpAssert.ProblemAsync(await CreateEnvironment(user, slug, name, create: null), HttpStatusCode.Conflict);
            Assert.Equal("databaseName", create.GetProperty("field").GetString());
        }
        await HttpAssert.ProblemAsync(await user.PostAsJsonAsync($"/api/workspaces/{slug}/environments/dev/adopt",
            new { server = "local", databaseName = database }), HttpStatusCode.Forbidden);
        Assert.Equal(0L, await EnvironmentCountAsync(slug));
    }

    [Fact]
    public async Task Another_workspaces_orphaned_database_cannot_be_attached_by_a_user_and_only_a_system_Admin_may_adopt_it()
    {
        using var admin = await api.AdminAsync();
        var (victim, victimDatabase) = await api.NewWorkspaceWithEnvironmentAsync(admin, "victim");
        var victimOwner = await OwnerOf(victimDatabase);
        await api.WorkspaceExecuteAsync(victimDatabase,
            $"SET ROLE \"{victimOwner}\"; CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('the victim''s data'); RESET ROLE;");
        // The victim deletes the environment and keeps its database: detached, still claimed.
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{victim}/environments/dev")).StatusCode);
        Assert.Equal("detached", await api.ScalarAsync<string>("SELECT state FROM workspace_databases WHERE database_name = @d",
            ("d", victimDatabase)));

        var (mallory, attacker) = await AttackerAsync();
        await RefusedToUserAsync(mallory, attacker, victimDatabase);
        Assert.Equal(victimOwner, await OwnerOf(victimDatabase));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(victimDatabase, "SELECT count(*) FROM secrets"));

        // A soft-deleted workspace keeps its databases claimed (attached); a purged one leaves them detached: neither is up for grabs.
        var (softDeleted, softDatabase) = await api.NewWorkspaceWithEnvironmentAsync(admin, "soft");
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{softDeleted}")).StatusCode);
        await RefusedToUserAsync(mallory, attacker, softDatabase);
        Assert.Equal("attached", await api.ScalarAsync<string>("SELECT state FROM workspace_databases WHERE database_name = @d",
            ("d", softDatabase)));
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{softDeleted}?purge=true")).StatusCode);
        Assert.Equal("detached", await api.ScalarAsync<string>("SELECT state FROM workspace_databases WHERE database_name = @d",
            ("d", softDatabase)));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{softDatabase}'"));
        await RefusedToUserAsync(mallory, attacker, softDatabase);

        // A system Admin may adopt the detached database (here into the attacker's workspace, to show what it does),
        // and it is recorded: new roles of the new environment take it over; the old ones are gone.
        var adopted = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{attacker}/environments/dev/adopt",
            new { server = "local", databaseName = victimDatabase }), HttpStatusCode.Created);
        var environmentId = adopted.Id;
        Assert.Equal("ready", adopted.Status);
        Assert.Equal($"tcws_{environmentId:N}_owner", await OwnerOf(victimDatabase));
        Assert.Equal($"tcws_{environmentId:N}_owner", await api.WorkspaceScalarAsync<string>(victimDatabase,
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'secrets'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_roles WHERE rolname = '{victimOwner}'"));
        Assert.Equal(environmentId, await api.WorkspaceScalarAsync<Guid>(victimDatabase, "SELECT environment_id FROM tcstudio_ownership.marker"));
        Assert.Equal("attached adopted",
            await api.ScalarAsync<string>("SELECT state || ' ' || origin FROM workspace_databases WHERE database_name = @d", ("d", victimDatabase)));
        Assert.Equal(1L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = 'environment.adopted'",
            ("s", attacker)));

        // Its data is reachable through the new environment's own roles.
        await WorkspaceApiFixture.CreateProcedureAsync(mallory, attacker, "read_secrets",
            "CREATE FUNCTION read_secrets() RETURNS SETOF text LANGUAGE sql AS $$ SELECT v FROM secrets $$;");
        await ProcedureCalls.PublishAsync(mallory, attacker, "read_secrets");
        var rows = await ProcedureCalls.ExecutedAsync(mallory, attacker, "read_secrets", new { });
        Assert.Equal("the victim's data", rows.ResultSets[0].Cell(0, 0).GetString());

        // The workspace's Owner may not drop a database a system Admin adopted; deleting keeps it, detached again.
        var refused = await HttpAssert.ProblemAsync(await mallory.DeleteAsync($"/api/workspaces/{attacker}/environments/dev?dropDatabase=true"),
            HttpStatusCode.Forbidden);
        Assert.Contains("adopted", refused.GetProperty("detail").GetString());
        Assert.Equal(HttpStatusCode.NoContent, (await mallory.DeleteAsync($"/api/workspaces/{attacker}/environments/dev")).StatusCode);
        Assert.Equal("detached", await api.ScalarAsync<string>("SELECT state FROM workspace_databases WHERE database_name = @d",
            ("d", victimDatabase)));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(victimDatabase, "SELECT count(*) FROM secrets"));
    }

    [Fact]
    public async Task The_APIs_system_role_cannot_connect_to_a_workspace_database_and_its_deploy_login_cannot_read_the_system_tables()
    {
        using var admin = await api.AdminAsync();
        var (_, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "sealed-off");

        // The system database's app role reaches workspace databases only through their own roles, never itself.
        Assert.False(await api.ScalarAsync<bool>("SELECT has_database_privilege(@role, @db, 'CONNECT')", ("role", api.RoleNames.App),
            ("db", database)));
        // And the provisioner (the API's other credential) cannot read the system database's tables.
        Assert.False(await api.ScalarAsync<bool>("SELECT has_table_privilege(@role, 'public.users', 'SELECT')", ("role", api.ProvisionerLogin)));
        Assert.Equal("False False False False", await api.ScalarAsync<string>(
            "SELECT initcap(rolsuper::text) || ' ' || initcap(rolbypassrls::text) || ' ' "
            + "|| initcap(rolcreatedb::text) || ' ' || initcap(rolcreaterole::text) "
            + "FROM pg_roles WHERE rolname = @role", ("role", api.RoleNames.App)));
    }

    [Fact]
    public async Task Another_applications_database_on_the_server_is_never_touched()
    {
        var foreign = api.NewDatabaseName("billing_app");
        await api.Server.ExecuteAsync($"CREATE DATABASE {foreign}");
        await api.WorkspaceExecuteAsync(foreign, "CREATE TABLE invoices (id int); INSERT INTO invoices VALUES (1);");
        var aclBefore = await api.WorkspaceScalarAsync<string>("postgres",
            $"SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = '{foreign}'");

        var (mallory, attacker) = await AttackerAsync();
        var created = await HttpAssert.ProblemAsync(await CreateEnvironment(mallory, attacker, foreign), HttpStatusCode.Conflict);
        Assert.Contains("already exists", created.GetProperty("detail").GetString());
        await RefusedToUserAsync(mallory, attacker, foreign, claimed: false);

        Assert.Equal("postgres", await OwnerOf(foreign));
        Assert.Equal(aclBefore, await api.WorkspaceScalarAsync<string>("postgres",
            $"SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = '{foreign}'"));
        Assert.False(await api.WorkspaceScalarAsync<bool>(foreign,
            "SELECT to_regnamespace('tcstudio_ownership') IS NOT NULL OR to_regnamespace('tcstudio') IS NOT NULL"));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE database_name = @d", ("d", foreign)));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(foreign, "SELECT count(*) FROM invoices"));
    }

    [Fact]
    public async Task A_database_is_only_used_or_dropped_while_its_marker_names_the_environment()
    {
        var (mallory, slug) = await AttackerAsync();
        var database = api.NewDatabaseName("swapped");
        await HttpAssert.ReadAsync<EnvironmentDetails>(await CreateEnvironment(mallory, slug, database), HttpStatusCode.Created);
        await WorkspaceApiFixture.CreateProcedureAsync(mallory, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        Assert.Equal(HttpStatusCode.OK, (await mallory.PostAsync($"/api/workspaces/{slug}/procedures/one/publish?env=dev", null)).StatusCode);
        var environmentId = await EnvironmentIdAsync(slug, "dev");
        var workspaceId = await api.ScalarAsync<Guid>("SELECT id FROM workspaces WHERE slug = @s", ("s", slug));
        var cache = api.Factory.Services.GetRequiredService<WorkspaceConnectionCache>();

        // The database behind the environment is swapped for another application's under the same name.
        cache.Evict(workspaceId, "dev");
        await api.Server.ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'");
        await api.Server.ExecuteAsync($"ALTER DATABASE {database} RENAME TO {database}_moved");
        await api.Server.ExecuteAsync($"CREATE DATABASE {database}");
        await api.WorkspaceExecuteAsync(database, "CREATE TABLE precious (id int); INSERT INTO precious VALUES (1);");
        try
        {
            var unmarked = await HttpAssert.ProblemAsync(await mallory.GetAsync($"/api/workspaces/{slug}/environments/dev/status"),
                HttpStatusCode.Conflict);
            Assert.Contains("has no TC Studio marker", unmarked.GetProperty("detail").GetString());
            Assert.Contains(environmentId.ToString(), unmarked.GetProperty("detail").GetString());
            var dropUnmarked = await HttpAssert.ProblemAsync(await mallory.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true"),
                HttpStatusCode.Conflict);
            Assert.Contains("has no TC Studio marker", dropUnmarked.GetProperty("detail").GetString());
            Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM precious"));
            Assert.Equal(1L, await EnvironmentCountAsync(slug));
        }
        finally
        {
            cache.Evict(workspaceId, "dev");
            await api.Server.ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'");
            await api.Server.ExecuteAsync($"DROP DATABASE {database} WITH (FORCE)");
            await api.Server.ExecuteAsync($"ALTER DATABASE {database}_moved RENAME TO {database}");
        }

        // A marker naming another environment: every new connection refuses it, naming both sides, and so does the drop.
        var stranger = Guid.CreateVersion7();
        await api.WorkspaceExecuteAsync(database, $"UPDATE tcstudio_ownership.marker SET environment_id = '{stranger}'");
        cache.Evict(workspaceId, "dev");
        var mismatch = await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(mallory, slug, "one", new { }),
            HttpStatusCode.Conflict);
        var detail = mismatch.GetProperty("detail").GetString()!;
        Assert.Contains(stranger.ToString(), detail);
        Assert.Contains(environmentId.ToString(), detail);
        Assert.Equal("dev", mismatch.GetProperty("environment").GetString());
        await HttpAssert.ProblemAsync(await mallory.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true"),
            HttpStatusCode.Conflict);
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));

        // Its own marker back: it is used again, and dropped with its roles and claim.
        await api.WorkspaceExecuteAsync(database, $"UPDATE tcstudio_ownership.marker SET environment_id = '{environmentId}'");
        cache.Evict(workspaceId, "dev");
        await ProcedureCalls.ExecutedAsync(mallory, slug, "one", new { });
        Assert.Equal(HttpStatusCode.NoContent, (await mallory.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true")).StatusCode);
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres",
            $"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tcws_{environmentId:N}%'"));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE database_name = @d", ("d", database)));
    }

    [Fact]
    public async Task Each_environment_has_roles_of_its_own_that_a_later_environment_never_inherits()
    {
        var (mallory, slug) = await AttackerAsync();
        var database = api.NewDatabaseName("reused");
        await HttpAssert.ReadAsync<EnvironmentDetails>(await CreateEnvironment(mallory, slug, database), HttpStatusCode.Created);
        var first = await EnvironmentIdAsync(slug, "dev");
        Assert.Equal("t f f f f f f 10", await api.WorkspaceScalarAsync<string>("postgres", $"""
            SELECT concat_ws(' ', bool_and(rolcanlogin), bool_or(rolsuper), bool_or(rolcreatedb), bool_or(rolcreaterole), bool_or(rolinherit),
                   bool_or(rolreplication), bool_or(rolbypassrls), max(rolconnlimit))
            FROM pg_roles WHERE rolname IN ('tcws_{first:N}_owner', 'tcws_{first:N}_exec')
            """).ContinueWith(t => t.Result.Replace("true", "t").Replace("false", "f")));

        // The passwords are random, kept only encrypted in the system database, and set on the server as SCRAM verifiers.
        await using (var db = api.CreateDbContext())
        {
            var claim = await db.WorkspaceDatabases.SingleAsync(d => d.EnvironmentId == first);
            var secrets = new WorkspaceSecrets(new ConfigurationBuilder().AddInMemoryCollection(
                new Dictionary<string, string?> { [WorkspaceSecrets.KeyName] = api.WorkspaceSecretKey }).Build(), new TestHostEnvironment());
            var password = secrets.Unprotect(claim.ExecuteSecret!, claim.ExecuteRole!);
            Assert.DoesNotContain(password, System.Text.Encoding.Latin1.GetString(claim.ExecuteSecret!));
            await using var login = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(api.Server.ConnectionString(database, pooling: false))
            {
                Username = claim.ExecuteRole, Password = password,
            }.ConnectionString);
            await login.OpenAsync(); // the stored password is the role's
            await using var wrong = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(login.ConnectionString) { Password = password
                + "x" }.ConnectionString);
            await Assert.ThrowsAsync<PostgresException>(() => wrong.OpenAsync());
        }
        Assert.StartsWith("SCRAM-SHA-256$4096:", await api.WorkspaceScalarAsync<string>("postgres",
            $"SELECT rolpassword FROM pg_authid WHERE rolname = 'tcws_{first:N}_exec'"));

        // Dropped with its database, the environment's roles go; the next environment on the same name gets new ones.
        Assert.Equal(HttpStatusCode.NoContent, (await mallory.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true")).StatusCode);
        await HttpAssert.ReadAsync<EnvironmentDetails>(await CreateEnvironment(mallory, slug, database), HttpStatusCode.Created);
        var second = await EnvironmentIdAsync(slug, "dev");
        Assert.NotEqual(first, second);
        Assert.Equal($"tcws_{second:N}_owner", await OwnerOf(database));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tcws_{first:N}%'"));

        // Deleted without dropping, the database stays with its old roles (they own it) and cannot be created over.
        Assert.Equal(HttpStatusCode.NoContent, (await mallory.DeleteAsync($"/api/workspaces/{slug}/environments/dev")).StatusCode);
        await HttpAssert.ProblemAsync(await CreateEnvironment(mallory, slug, database), HttpStatusCode.Conflict);
        var other = api.NewDatabaseName("reused_other");
        await HttpAssert.ReadAsync<EnvironmentDetails>(await CreateEnvironment(mallory, slug, other), HttpStatusCode.Created);
        var third = await EnvironmentIdAsync(slug, "dev");
        Assert.Equal($"tcws_{third:N}_owner", await OwnerOf(other));
        Assert.Equal($"tcws_{second:N}_owner", await OwnerOf(database));
        Assert.False(await api.WorkspaceScalarAsync<bool>(database,
            $"SELECT has_database_privilege('tcws_{third:N}_exec', current_database(), 'CONNECT')"));
    }

    [Fact]
    public async Task A_purge_drops_the_workspaces_databases_only_when_asked_and_only_its_own()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "purged");
        var environmentId = await EnvironmentIdAsync(slug, "dev");
        var second = api.NewDatabaseName("purged_test");
        await HttpAssert.ReadAsync<EnvironmentDetails>(await CreateEnvironment(admin, slug, second, name: "test"), HttpStatusCode.Created);
        // The test environment's database was swapped for one that is not its own: the purge must leave it alone.
        await api.WorkspaceExecuteAsync(second, $"UPDATE tcstudio_ownership.marker SET environment_id = '{Guid.CreateVersion7()}'");

        await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/workspaces/{slug}?dropDatabases=true"), HttpStatusCode.BadRequest);
        var refused = await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/workspaces/{slug}?purge=true&dropDatabases=true"),
            HttpStatusCode.Conflict);
        Assert.Equal("test", refused.GetProperty("environment").GetString());
        // What was dropped before the refusal stays dropped, and the workspace is still there for another try.
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres",
            $"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tcws_{environmentId:N}%'"));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{second}'"));
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"/api/workspaces/{slug}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync($"/api/workspaces/{slug}/environments/dev")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"/api/workspaces/{slug}/environments/test")).StatusCode);

        // Purged without dropping, the remaining database stays claimed, detached.
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}?purge=true")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync($"/api/workspaces/{slug}")).StatusCode);
        Assert.Equal("detached", await api.ScalarAsync<string>("SELECT state FROM workspace_databases WHERE database_name = @d", ("d", second)));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE database_name = @d", ("d", database)));
        Assert.Equal(1L,
            await api.ScalarAsync<long>("SELECT count(*) FROM activities WHERE action = 'workspace.purged' AND details->>'slug' = @s", ("s", slug)));
    }

    private sealed class TestHostEnvironment : Microsoft.Extensions.Hosting.IHostEnvironment
    {
        public string EnvironmentName { get; set; } = "Test";
        public string ApplicationName { get; set; } = "tests";
        public string ContentRootPath { get; set; } = Path.GetTempPath();
        public Microsoft.Extensions.FileProviders.IFileProvider ContentRootFileProvider { get; set; } =
            new Microsoft.Extensions.FileProviders.NullFileProvider();
    }
}
