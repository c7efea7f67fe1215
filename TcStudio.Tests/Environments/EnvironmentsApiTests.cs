using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Api.Environments;
using TcStudio.Api.Infrastructure;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Procedures;
using static TcStudio.Tests.Environments.EnvironmentCalls;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.Environments;

public sealed class EnvironmentsApiFixture(PostgresServer server) : WorkspaceApiFixture(server)
{
    /// <summary>A SQL Server that is never contacted: the provider rule is checked before any connection.</summary>
    protected override IEnumerable<KeyValuePair<string, string?>> ExtraSettings =>
    [
        new("WorkspaceServers:mssql:Provider", "sqlserver"),
        new("WorkspaceServers:mssql:ConnectionString", "Server=127.0.0.1,1;User ID=sa;Password=secret-never-shown;TrustServerCertificate=true"),
    ];
}

/// <summary>Servers, environments (with database creation), base-schema migrate/revert/re-migrate, tampering, isolation.</summary>
public sealed class EnvironmentsApiTests(EnvironmentsApiFixture api) : IClassFixture<EnvironmentsApiFixture>
{
    private WorkspaceDatabaseService Databases => api.Factory.Services.GetRequiredService<WorkspaceDatabaseService>();

    [Fact]
    public async Task Servers_are_listed_by_name_and_provider_without_secrets()
    {
        using var user = await api.UserAsync();
        var response = await user.GetAsync("/api/workspace-servers");
        var body = await response.Content.ReadAsStringAsync();
        // Strict: a server carrying any member beyond its name and provider fails the read.
        var servers = (await HttpAssert.ReadAsync<PagedList<WorkspaceServerSummary>>(response)).Items;
        Assert.Contains(new WorkspaceServerSummary("local", "postgres"), servers);
        Assert.Contains(new WorkspaceServerSummary("mssql", "sqlserver"), servers);
        Assert.DoesNotContain("secret-never-shown", body);
        Assert.DoesNotContain("127.0.0.1", body);

        var openApi = await (await api.CreateAnonymousClient().GetAsync("/openapi/v1.json")).Content.ReadAsStringAsync();
        foreach (var path in new[] { "/api/workspace-servers", "/api/workspaces/{slug}/environments/{env}/status",
            "/api/workspaces/{slug}/procedures/{name}/execute" })
        {
            Assert.Contains($"\"{path}\"", openApi);
        }
    }

    [Fact]
    public async Task Creating_an_environment_creates_its_database_with_roles_of_its_own_and_the_base_schema()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "env-create");

        var environment = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.GetAsync($"/api/workspaces/{slug}/environments/dev"));
        Assert.Equal("ready", environment.Status);
        Assert.Equal(2, environment.SchemaVersion);
        Assert.Equal("postgres", environment.Provider);
        Assert.Equal(["0001_base_schema", "0002_deployment_lookup"],
            (await api.WorkspaceScalarAsync<string[]>(database,
            "SELECT array_agg(lpad(version::text, 4, '0') || '_' || name ORDER BY version) FROM tcstudio.tcstudio_schema_migrations")));
        Assert.Equal(1L,
            await api.ScalarAsync<long>("SELECT count(*) FROM activities WHERE action = 'environment.created' AND details->>'databaseName' = @d",
            ("d", database)));

        // The database belongs to a role of its own that can do nothing outside it.
        var owner = await api.WorkspaceScalarAsync<string>(database,
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()");
        Assert.StartsWith("tcws_", owner);
        Assert.Equal("f f f f f", await api.WorkspaceScalarAsync<string>(database, $"""
            SELECT concat_ws(' ', bool_or(rolsuper), bool_or(rolcreatedb), bool_or(rolcreaterole), bool_or(rolreplication), bool_or(rolbypassrls))
            FROM pg_roles WHERE rolname LIKE '{owner[..^"_owner".Length]}%'
            """).ContinueWith(t => t.Result.Replace("false", "f")));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, $"""
            SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid
            WHERE r.rolname LIKE '{owner[..^"_owner".Length]}%'
              AND g.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'pg_read_all_data')
            """));
        Assert.False(await api.WorkspaceScalarAsync<bool>(database, "SELECT has_database_privilege('public', current_database(), 'CONNECT')"));
    }

    [Fact]
    public async Task Bad_environments_are_refused_before_anything_is_created()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "env-bad");
        var rowsBefore = await api.ScalarAsync<long>("SELECT count(*) FROM workspace_environments");

        async Task Refused(object body, HttpStatusCode status, string? field = null)
        {
            var response = await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments", body);
            if (field is not null && status == HttpStatusCode.BadRequest)
            {
                await HttpAssert.ValidationProblemAsync(response, field);
                return;
            }
            var problem = await HttpAssert.ProblemAsync(response, status);
            if (field is not null && status == HttpStatusCode.Conflict) Assert.Equal(field, problem.GetProperty("field").GetString());
        }

        await Refused(new { name = "test", server = "nowhere", databaseName = "x", create = true }, HttpStatusCode.BadRequest, "server");
        await Refused(new { name = "test", server = "local", databaseName = "bad-name; DROP DATABASE x", create = true }, HttpStatusCode.BadRequest,
            "databaseName");
        await Refused(new { name = "test", server = "local", databaseName = new string('d', 64), create = true }, HttpStatusCode.BadRequest,
            "databaseName");
        await Refused(new { name = "test", server = "local", databaseName = "postgres", create = false }, HttpStatusCode.BadRequest, "databaseName");
        await Refused(new { name = "test", server = "local", databaseName = api.DatabaseName, create = false }, HttpStatusCode.BadRequest,
            "databaseName");
        await Refused(new { name = "Not Valid", server = "local", databaseName = "x", create = true }, HttpStatusCode.BadRequest, "name");
        await Refused(new { name = "test", server = "local", databaseName = "x", create = true, host = "10.0.0.1" },
            HttpStatusCode.BadRequest, "host");
        await Refused(new { name = "dev", server = "local", databaseName = api.NewDatabaseName("dup"), create = true },
            HttpStatusCode.Conflict, "name");
        await Refused(new { name = "test", server = "mssql", databaseName = "elsewhere", create = true }, HttpStatusCode.Conflict, "server");
        await Refused(new { name = "test", server = "local", databaseName = database, create = false }, HttpStatusCode.Conflict, "databaseName");
        await Refused(new { name = "test", server = "local", databaseName = api.NewDatabaseName("missing"), create = false },
            HttpStatusCode.Conflict);

        var existing = api.NewDatabaseName("existing");
        await api.Server.ExecuteAsync($"CREATE DATABASE {existing}");
        await Refused(new { name = "test", server = "local", databaseName = existing, create = true }, HttpStatusCode.Conflict);
        // A system Admin may adopt an existing database, but only one the server's deploy login may own: another
        // application's database (here the superuser's) stays out of reach.
        var foreign = await HttpAssert.ProblemAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "test", server = "local", databaseName = existing, create = false }), HttpStatusCode.Conflict);
        Assert.Contains("owned by 'postgres'", foreign.GetProperty("detail").GetString());

        Assert.Equal(rowsBefore, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_environments"));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE database_name = @d", ("d", existing)));

        // Handed over by the server's operator, it is adopted: new roles own it, with the marker and the base schema.
        await api.Server.ExecuteAsync($"ALTER DATABASE {existing} OWNER TO {api.ProvisionerLogin}");
        var attached = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "test", server = "local", databaseName = existing, create = false }), HttpStatusCode.Created);
        Assert.Equal("ready", attached.Status);
        Assert.True(await api.WorkspaceScalarAsync<bool>(existing, "SELECT to_regclass('tcstudio.procedure_deployments') IS NOT NULL"));
        Assert.Equal($"tcws_{attached.Id:N}_owner",
            await api.WorkspaceScalarAsync<string>(existing,
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()"));
        Assert.Equal("adopted", await api.ScalarAsync<string>("SELECT origin FROM workspace_databases WHERE database_name = @d", ("d", existing)));

        using var member = await api.UserAsync(); // a Member of twsbp only
        await HttpAssert.ProblemAsync(await member.PostAsJsonAsync("/api/workspaces/twsbp/environments",
            new { name = "qa", server = "local", databaseName = "qa_db", create = true }), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task A_workspace_with_a_sql_server_environment_refuses_a_postgres_one()
    {
        using var admin = await api.AdminAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(admin, "sqlws", "sql")).Slug;
        // The SQL Server is unreachable: the row is not kept, and the failure names the environment.
        var unreachable = await HttpAssert.ProblemAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "dev", server = "mssql", databaseName = "sqlws_dev", create = true }), HttpStatusCode.ServiceUnavailable);
        Assert.Equal("dev", unreachable.GetProperty("environment").GetString());
        Assert.Equal(0L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM workspace_environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.slug = @s", ("s", slug)));

        await api.ExecuteAsync($"""
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, created_at, updated_at)
            SELECT gen_random_uuid(), id, 'dev', 'sqlserver', 'mssql', 'sqlws_dev', now(), now() FROM workspaces WHERE slug = '{slug}'
            """);
        var conflict = await HttpAssert.ProblemAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "test", server = "local", databaseName = api.NewDatabaseName("mixed"), create = true }), HttpStatusCode.Conflict);
        Assert.Contains("provider", conflict.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task The_base_schema_migrates_reverts_and_migrates_again_and_publishing_waits_for_it()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "env-migrate");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        var workspaceId = await api.ScalarAsync<Guid>("SELECT id FROM workspaces WHERE slug = @s", ("s", slug));
        var environmentId = await api.ScalarAsync<Guid>("SELECT id FROM workspace_environments WHERE workspace_id = @w AND name = 'dev'",
            ("w", workspaceId));
        var target = new WorkspaceTarget(workspaceId, slug, "dev", "local", database, environmentId);

        var reverted = await Databases.RevertAsync(target, toVersion: 0, progress: null, CancellationToken.None);
        Assert.Equal(["0002_deployment_lookup", "0001_base_schema"], reverted.Select(s => s.Migration.Id));
        Assert.False(await api.WorkspaceScalarAsync<bool>(database, "SELECT to_regnamespace('tcstudio') IS NOT NULL"));

        var behind = await StatusAsync(admin, slug);
        Assert.Equal("behind", behind.SchemaState);
        Assert.Equal(0, behind.SchemaVersion);
        Assert.Equal(2, behind.PendingMigrations.Count);
        Assert.Equal("pending", behind.Status);
        Assert.True(behind.Reachable);
        Assert.Equal("pending", await api.ScalarAsync<string>("SELECT status FROM workspace_environments WHERE database_name = @d", ("d", database)));

        var refused = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/one/publish?env=dev", null),
            HttpStatusCode.Conflict);
        Assert.Contains("migrate", refused.GetProperty("detail").GetString());

        var migrated = await MigrateAsync(admin, slug);
        Assert.Equal(2, migrated.Applied.Count);
        Assert.Equal(2, migrated.SchemaVersion);
        var again = await MigrateAsync(admin, slug);
        Assert.Empty(again.Applied);
        Assert.Equal("ready", await api.ScalarAsync<string>("SELECT status FROM workspace_environments WHERE database_name = @d", ("d", database)));
        await ProcedureCalls.PublishAsync(admin, slug, "one");
    }

    [Fact]
    public async Task A_tampered_or_newer_schema_is_detected_and_refused()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "env-tamper");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");

        await api.WorkspaceExecuteAsync(database, "UPDATE tcstudio.tcstudio_schema_migrations SET checksum = repeat('0', 64) WHERE version = 1");
        var tampered = await StatusAsync(admin, slug);
        Assert.Equal("checksum_mismatch", tampered.SchemaState);
        Assert.Equal("failed", tampered.Status);
        Assert.Contains("0001_base_schema", tampered.LastError);
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/environments/dev/migrate", null), HttpStatusCode.Conflict);
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/one/publish?env=dev", null), HttpStatusCode.Conflict);
        Assert.Contains("checksum", await api.ScalarAsync<string>("SELECT last_error FROM workspace_environments WHERE database_name = @d",
            ("d", database)));

        await api.WorkspaceExecuteAsync(database, $"""
            UPDATE tcstudio.tcstudio_schema_migrations SET checksum = '{WorkspaceMigrations.For("postgres")[0].Checksum}' WHERE version = 1;
            INSERT INTO tcstudio.tcstudio_schema_migrations (version, name, checksum, duration_ms) VALUES (99, 'from_the_future', repeat('f', 64), 1);
            """);
        Assert.Equal("ahead", (await StatusAsync(admin, slug)).SchemaState);
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/one/publish?env=dev", null), HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task Deleting_an_environment_keeps_its_database_unless_asked_to_drop_it()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "env-delete");
        var second = api.NewDatabaseName("env_delete_test");
        await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "test", server = "local", databaseName = second, create = true }), HttpStatusCode.Created);

        await HttpAssert.NoContentAsync(await admin.DeleteAsync($"/api/workspaces/{slug}/environments/dev"));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
        await HttpAssert.NoContentAsync(await admin.DeleteAsync($"/api/workspaces/{slug}/environments/test?dropDatabase=true"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{second}'"));
        var testId = await api.ScalarAsync<Guid>(
            "SELECT entity_id FROM activities WHERE action = 'environment.created' AND details->>'databaseName' = @d", ("d", second));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tcws_{testId:N}%'"));
        // The kept database stays claimed, detached: nobody else can create or attach it.
        Assert.Equal("detached", await api.ScalarAsync<string>("SELECT state FROM workspace_databases WHERE database_name = @d", ("d", database)));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE database_name = @d", ("d", second)));
        await HttpAssert.ProblemAsync(await admin.GetAsync($"/api/workspaces/{slug}/environments/test"), HttpStatusCode.NotFound);
        Assert.Equal(2L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = 'environment.deleted'",
            ("s", slug)));
    }

    [Fact]
    public async Task Published_code_cannot_reach_server_files_programs_or_other_databases()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "isolation");
        var (_, otherDatabase) = await api.NewWorkspaceWithEnvironmentAsync(admin, "isolation-other");
        var attempts = new Dictionary<string, string>
        {
            ["read_file"] = "CREATE FUNCTION read_file() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/passwd') $$;",
            ["list_dir"] = "CREATE FUNCTION list_dir() RETURNS SETOF text LANGUAGE sql AS $$ SELECT pg_ls_dir('/') $$;",
            ["run_program"] = "CREATE PROCEDURE run_program() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id'''; END $$;",
            ["write_file"] =
                "CREATE PROCEDURE write_file() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'COPY (SELECT 1) TO ''/tmp/tcstudio-escape'''; END $$;",
            ["load_dblink"] = "CREATE PROCEDURE load_dblink() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'CREATE EXTENSION dblink'; END $$;",
            ["become_admin"] = "CREATE PROCEDURE become_admin() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$;",
            ["read_settings"] = "CREATE FUNCTION read_settings() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('data_directory') $$;",
        };
        foreach (var (name, sql) in attempts)
        {
            await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, name, sql);
            await ProcedureCalls.PublishAsync(admin, slug, name);
            var refused = await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, name, new { }),
                HttpStatusCode.UnprocessableEntity);
            Assert.Equal("42501", refused.GetProperty("number").GetString()); // insufficient_privilege, every time
        }
        Assert.False(File.Exists("/tmp/tcstudio-escape"));

        // An untrusted language cannot even be published.
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "in_c", "CREATE FUNCTION in_c() RETURNS int LANGUAGE c AS 'libc', 'getpid';");
        var c = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/in_c/publish?env=dev", null),
            HttpStatusCode.UnprocessableEntity);
        Assert.Contains("42501", c.ToString());

        // The workspace's own roles cannot connect to another workspace's database, nor to the system database.
        var exec = await api.WorkspaceScalarAsync<string>(database,
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tcws_%' AND rolname LIKE '%_exec' "
            + "AND has_database_privilege(rolname, current_database(), 'CONNECT') ORDER BY rolname LIMIT 1");
        Assert.False(await api.WorkspaceScalarAsync<bool>(otherDatabase, $"SELECT has_database_privilege('{exec}', current_database(), 'CONNECT')"));
        Assert.False(await api.WorkspaceScalarAsync<bool>(database, $"SELECT has_database_privilege('{exec}', current_database(), 'CREATE')"));
        Assert.False(await api.WorkspaceScalarAsync<bool>(database, $"SELECT has_schema_privilege('{exec}', 'tcstudio', 'USAGE')"));
    }
}
