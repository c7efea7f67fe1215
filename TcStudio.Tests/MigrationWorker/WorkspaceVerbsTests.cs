using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.SystemDatabase.Entities;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases.Postgres;
using TcStudio.Tests.SystemDatabase;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>
/// The worker's default run provisions the seeded twsbp/dev; `workspaces` verbs run over every environment, convert
/// environments made by the previous version, refuse databases that were never TC Studio's, and go on past failures.
/// </summary>
public sealed class WorkspaceVerbsTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>, IAsyncLifetime
{
    private string DevDatabase => MigrationWorkerRunner.DevDatabaseName(database.ConnectionString)!;
    private string LegacyDatabase => database.DatabaseName + "_legacy_qa";
    private string ForeignDatabase => database.DatabaseName + "_foreign";

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        var roles = await WorkspaceRoles.RegisteredAsync(database);
        foreach (var name in new[] { DevDatabase, LegacyDatabase, ForeignDatabase }) await database.Server.DropDatabaseAsync(name);
        var (legacyOwner, legacyExec) = PostgresWorkspaceRoles.Legacy(LegacyDatabase);
        await WorkspaceRoles.DropAsync(database.Server, [.. roles, legacyOwner, legacyExec]);
    }

    private Task<ProcessResult> Worker(params string[] arguments) => MigrationWorkerRunner.RunAsync(database.ConnectionString, arguments);

    [Fact]
    public async Task The_default_run_creates_the_seeded_environment_converts_old_ones_and_the_verbs_go_on_past_a_failing_one()
    {
        var first = await Worker();
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Contains($"created environment twsbp/dev on server local (database {DevDatabase})", first.StandardOutput);
        Assert.Contains($"created database {DevDatabase}", first.StandardOutput);
        Assert.Contains("applied 0001_base_schema", first.StandardOutput);
        Assert.Contains("workspaces migrate: 1 ok, 0 failed", first.StandardOutput);
        Guid devId;
        await using (var db = database.CreateDbContext())
        {
            var dev = await db.WorkspaceEnvironments.SingleAsync();
            Assert.Equal(("dev", "local", "postgres", EnvironmentStatus.Ready, 2),
                (dev.Name, dev.Server, dev.Provider, dev.Status, dev.SchemaVersion));
            var claim = await db.WorkspaceDatabases.SingleAsync();
            Assert.Equal((dev.Id, WorkspaceDatabaseStates.Attached, WorkspaceDatabaseOrigins.Created),
                (claim.EnvironmentId!.Value, claim.State, claim.Origin));
            devId = dev.Id;
        }
        Assert.Equal(devId, await database.Server.ScalarInAsync<Guid>(DevDatabase, "SELECT environment_id FROM tcstudio_ownership.marker"));

        // Three more environments, as rows an earlier version left: one on a database it created (per-database roles,
        // no marker), one on a database it merely attached (another application's, owned by the superuser), and
        // one whose database has vanished.
        await LegacyWorkspaceDatabase.CreateAsync(database.Server, LegacyDatabase);
        await database.Server.ExecuteAsync($"CREATE DATABASE {ForeignDatabase}");
        await database.ExecuteAsync($"""
            INSERT INTO workspaces (id, name, slug, created_by, created_at, updated_at, settings)
            SELECT gen_random_uuid(), 'Other', 'other', id, now(), now(), jsonb_build_object() FROM users WHERE username = 'admin';
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at,
                updated_at)
            SELECT gen_random_uuid(), id, 'qa', 'postgres', 'local', '{LegacyDatabase}', 'ready', 2, now(), now() FROM workspaces
                WHERE slug = 'other';
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at,
                updated_at)
            SELECT gen_random_uuid(), id, 'attached', 'postgres', 'local', '{ForeignDatabase}', 'ready', 2, now(), now() FROM workspaces
                WHERE slug = 'other';
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at,
                updated_at)
            SELECT gen_random_uuid(), id, 'gone', 'postgres', 'local', 'no_such_database_here', 'ready', 2, now(), now() FROM workspaces
                WHERE slug = 'other';
            """);

        var migrate = await Worker("workspaces", "migrate");
        Assert.True(migrate.ExitCode == 1, migrate.ToString());
        var output = migrate.StandardOutput.ReplaceLineEndings("\n");
        Assert.Contains("workspaces migrate: 4 environments", output);
        Assert.Matches(@"  other/gone \(postgres local/no_such_database_here\)\n    FAILED: .*does not exist", output);
        Assert.Matches(@"  other/attached \(postgres local/\w+\)\n    FAILED: .*owned by 'postgres'.*attached, not created", output);
        Assert.Matches(@"  other/qa \(postgres local/\w+\)\n    converted: per-environment roles", output);
        Assert.Contains("up to date at version 2", output);
        Assert.Contains("workspaces migrate: 2 ok, 2 failed (other/attached, other/gone), in ", output);
        Assert.Equal("attached:failed dev:ready gone:unreachable qa:ready", await database.ScalarAsync<string>(
            "SELECT string_agg(name || ':' || status, ' ' ORDER BY name) FROM workspace_environments"));
        Assert.Contains("does not exist", await database.ScalarAsync<string>("SELECT last_error FROM workspace_environments WHERE name = 'gone'"));

        // The converted database: the environment's own roles own it and its objects, the data is there, the old
        // per-database roles are gone, and the refused one was left exactly as it was.
        var qaId = await database.ScalarAsync<Guid>("SELECT id FROM workspace_environments WHERE name = 'qa'");
        var qaOwner = PostgresWorkspaceRoles.Owner(qaId);
        Assert.Equal(qaOwner,
            await database.Server.ScalarInAsync<string>(LegacyDatabase,
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()"));
        Assert.Equal(qaOwner, await database.Server.ScalarInAsync<string>(LegacyDatabase,
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'orders'"));
        Assert.Equal(2L, await database.Server.ScalarInAsync<long>(LegacyDatabase, "SELECT count(*) FROM orders"));
        Assert.Equal(qaId, await database.Server.ScalarInAsync<Guid>(LegacyDatabase, "SELECT environment_id FROM tcstudio_ownership.marker"));
        var (legacyOwner, legacyExec) = PostgresWorkspaceRoles.Legacy(LegacyDatabase);
        Assert.Equal(0L, await database.Server.ScalarInAsync<long>("postgres",
            $"SELECT count(*) FROM pg_roles WHERE rolname IN ('{legacyOwner}', '{legacyExec}')"));
        Assert.Equal("postgres",
            await database.Server.ScalarInAsync<string>(ForeignDatabase,
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()"));
        Assert.False(await database.Server.ScalarInAsync<bool>(ForeignDatabase, "SELECT to_regnamespace('tcstudio_ownership') IS NOT NULL"));
        Assert.Equal(2L, await database.ScalarAsync<long>("SELECT count(*) FROM workspace_databases WHERE state = 'attached'"));

        var revert = await Worker("workspaces", "revert", "--workspace", "twsbp", "--env", "dev");
        Assert.True(revert.ExitCode == 0, revert.ToString());
        Assert.Contains("reverted 0002_deployment_lookup", revert.StandardOutput);
        Assert.Contains("workspaces revert: 1 environment", revert.StandardOutput);

        var status = await Worker("workspaces", "status");
        Assert.Equal(1, status.ExitCode);
        Assert.Contains("twsbp/dev (postgres local/", status.StandardOutput);
        Assert.Contains("behind at version 1 of 2; pending: 0002_deployment_lookup", status.StandardOutput);
        Assert.Contains("current at version 2", status.StandardOutput);
        Assert.Equal("pending", await database.ScalarAsync<string>("SELECT status FROM workspace_environments WHERE name = 'dev'"));

        var onlyDev = await Worker("workspaces", "migrate", "--workspace", "twsbp");
        Assert.True(onlyDev.ExitCode == 0, onlyDev.ToString());
        Assert.Contains("applied 0002_deployment_lookup", onlyDev.StandardOutput);
        Assert.DoesNotContain("other/", onlyDev.StandardOutput);

        var nothing = await Worker("workspaces", "migrate", "--workspace", "nope");
        Assert.Equal(2, nothing.ExitCode);
        Assert.Contains("No environment matches --workspace nope", nothing.StandardError);

        // The default run reports the failing environments but does not fail the start of everything else.
        var again = await Worker();
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("workspaces migrate: 2 ok, 2 failed", again.StandardOutput);
    }
}

/// <summary>Cleans up the server-wide roles tests leave behind (databases go with their fixtures; roles would not).</summary>
public static class WorkspaceRoles
{
    public static async Task<List<string>> RegisteredAsync(SystemDatabaseFixture database)
    {
        try
        {
            return await database.ColumnAsync($"SELECT role_name FROM {PostgresProvisioning.Schema}.workspace_roles");
        }
        catch (PostgresException)
        {
            return []; // never bootstrapped
        }
    }

    public static async Task DropAsync(PostgresServer server, IEnumerable<string> roles)
    {
        foreach (var role in roles)
        {
            try
            {
                await server.ExecuteAsync($"DROP ROLE IF EXISTS \"{role}\"");
            }
            catch (PostgresException)
            {
                // still owns something on this throwaway server
            }
        }
    }
}
