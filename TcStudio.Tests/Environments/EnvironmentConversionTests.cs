using System.Net;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Procedures;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.Environments;

public sealed class ConversionFixture(PostgresServer server) : WorkspaceApiFixture(server);

/// <summary>
/// Upgrade: an environment the previous version made (roles per database name with derived passwords, no marker, no
/// claim) is converted by its migrate, through the API, by the provisioner login: new per-environment roles take
/// the database and everything in it over, the marker and the claim are written, the old roles are dropped. A
/// database the previous version merely attached (another owner) is not converted.
/// </summary>
public sealed class EnvironmentConversionTests(ConversionFixture api) : IClassFixture<ConversionFixture>
{
    private const string OrderCount = "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orders $$;";

    private async Task<(HttpClient Admin, string Slug, Guid EnvironmentId)> OldEnvironmentAsync(string database, string prefix)
    {
        var admin = await api.AdminAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(admin, prefix)).Slug;
        var environmentId = Guid.CreateVersion7();
        await api.ExecuteAsync($"""
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at,
                updated_at)
            SELECT '{environmentId}', id, 'dev', 'postgres', 'local', '{database}', 'ready', 2, now(), now() FROM workspaces WHERE slug = '{slug}';
            INSERT INTO stored_procedures (id, workspace_id, name, sql_draft, sql_published, status, published_at, created_by, created_at, updated_at)
            SELECT gen_random_uuid(), w.id, 'order_count', $q${OrderCount}$q$, $q${OrderCount}$q$, 'published', now(), u.id, now(), now()
            FROM workspaces w, users u WHERE w.slug = '{slug}' AND u.username = 'admin';
            """);
        return (admin, slug, environmentId);
    }

    private Task<string> OwnerOf(string database) =>
        api.WorkspaceScalarAsync<string>(database, "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()");

    [Fact]
    public async Task An_environment_made_by_the_previous_version_is_converted_by_its_migrate()
    {
        var database = api.NewDatabaseName("legacy");
        await LegacyWorkspaceDatabase.CreateAsync(api.Server, database);
        var (legacyOwner, legacyExec) = PostgresWorkspaceRoles.Legacy(database);
        var (admin, slug, environmentId) = await OldEnvironmentAsync(database, "legacy");

        // Until converted, it is not used, and its database is not dropped.
        var notYet = await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "order_count", new { }), HttpStatusCode.Conflict);
        Assert.Contains("earlier version", notYet.GetProperty("detail").GetString());
        await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true"), HttpStatusCode.Conflict);

        var migrated = await EnvironmentCalls.MigrateAsync(admin, slug);
        Assert.True(migrated.Converted);
        Assert.Equal(2, migrated.SchemaVersion);

        var owner = PostgresWorkspaceRoles.Owner(environmentId);
        Assert.Equal(owner, await OwnerOf(database));
        Assert.Equal(owner, await api.WorkspaceScalarAsync<string>(database, "SELECT tableowner::text FROM pg_tables WHERE tablename = 'orders'"));
        Assert.Equal(owner, await api.WorkspaceScalarAsync<string>(database,
            "SELECT pg_get_userbyid(proowner)::text FROM pg_proc WHERE proname = 'order_count'"));
        Assert.Equal(environmentId, await api.WorkspaceScalarAsync<Guid>(database, "SELECT environment_id FROM tcstudio_ownership.marker"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres",
            $"SELECT count(*) FROM pg_roles WHERE rolname IN ('{legacyOwner}', '{legacyExec}')"));
        Assert.Equal("attached created", await api.ScalarAsync<string>(
            "SELECT state || ' ' || origin FROM workspace_databases WHERE environment_id = @e", ("e", environmentId)));
        Assert.Equal(1L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM activities WHERE action = 'environment.converted' AND entity_id = @e", ("e", environmentId)));
        // Published code and its data work as before, under the new roles.
        var result = await ProcedureCalls.ExecutedAsync(admin, slug, "order_count", new { });
        Assert.Equal(2, result.ResultSets[0].Cell(0, 0).GetInt64());
        Assert.False(await api.WorkspaceScalarAsync<bool>(database,
            $"SELECT has_schema_privilege('{PostgresWorkspaceRoles.Execute(environmentId)}', 'tcstudio', 'USAGE')"));

        var again = await EnvironmentCalls.MigrateAsync(admin, slug);
        Assert.False(again.Converted);
        Assert.Empty(again.Applied);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true")).StatusCode);
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
    }

    [Fact]
    public async Task A_database_the_previous_version_only_attached_is_not_converted()
    {
        var database = api.NewDatabaseName("legacy_attached");
        await api.Server.ExecuteAsync($"CREATE DATABASE {database}");
        var (admin, slug, environmentId) = await OldEnvironmentAsync(database, "attached");

        var refused = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/environments/dev/migrate", null),
            HttpStatusCode.Conflict);
        Assert.Contains("attached, not created", refused.GetProperty("detail").GetString());
        Assert.Equal("postgres", await OwnerOf(database));
        Assert.False(await api.WorkspaceScalarAsync<bool>(database, "SELECT to_regnamespace('tcstudio_ownership') IS NOT NULL"));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE database_name = @d", ("d", database)));
        Assert.Equal("failed", await api.ScalarAsync<string>("SELECT status FROM workspace_environments WHERE id = @e", ("e", environmentId)));

        // Deleting it keeps the database (never claimed, so a system Admin may adopt it later).
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}/environments/dev")).StatusCode);
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>("postgres", $"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
    }
}
