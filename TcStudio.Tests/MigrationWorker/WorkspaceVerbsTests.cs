using Microsoft.EntityFrameworkCore;
using TcStudio.Data.Entities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>The worker's default run provisions the seeded twsbp/dev; `workspaces` verbs run over every environment.</summary>
public sealed class WorkspaceVerbsTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>, IAsyncLifetime
{
    private string DevDatabase => MigrationWorkerRunner.DevDatabaseName(database.ConnectionString)!;
    private string OtherDatabase => database.DatabaseName + "_other_qa";

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await database.Server.DropDatabaseAsync(DevDatabase);
        await database.Server.DropDatabaseAsync(OtherDatabase);
    }

    private Task<ProcessResult> Worker(params string[] arguments) => MigrationWorkerRunner.RunAsync(database.ConnectionString, arguments);

    [Fact]
    public async Task The_default_run_creates_the_seeded_environment_and_the_verbs_go_on_past_a_failing_one()
    {
        var first = await Worker();
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Contains($"created environment twsbp/dev on server local (database {DevDatabase})", first.StandardOutput);
        Assert.Contains($"created database {DevDatabase}", first.StandardOutput);
        Assert.Contains("applied 0001_base_schema", first.StandardOutput);
        Assert.Contains("workspaces migrate: 1 ok, 0 failed", first.StandardOutput);
        await using (var db = database.CreateDbContext())
        {
            var dev = await db.WorkspaceEnvironments.SingleAsync();
            Assert.Equal(("dev", "local", "postgres", EnvironmentStatus.Ready, 2), (dev.Name, dev.Server, dev.Provider, dev.Status, dev.SchemaVersion));
        }

        // Two more environments: one healthy, one whose database has vanished.
        await database.Server.ExecuteAsync($"CREATE DATABASE {OtherDatabase}");
        await database.ExecuteAsync($"""
            INSERT INTO workspaces (id, name, slug, created_by, created_at, updated_at, settings)
            SELECT gen_random_uuid(), 'Other', 'other', id, now(), now(), jsonb_build_object() FROM users WHERE username = 'admin';
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at, updated_at)
            SELECT gen_random_uuid(), id, 'qa', 'postgres', 'local', '{OtherDatabase}', 'pending', 0, now(), now() FROM workspaces WHERE slug = 'other';
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at, updated_at)
            SELECT gen_random_uuid(), id, 'gone', 'postgres', 'local', 'no_such_database_here', 'ready', 2, now(), now() FROM workspaces WHERE slug = 'other';
            """);

        var migrate = await Worker("workspaces", "migrate");
        Assert.True(migrate.ExitCode == 1, migrate.ToString());
        Assert.Contains("workspaces migrate: 3 environments", migrate.StandardOutput);
        Assert.Matches(@"  other/gone \(postgres local/no_such_database_here\)\n    FAILED: .*does not exist", migrate.StandardOutput.ReplaceLineEndings("\n"));
        Assert.Contains("other/qa (postgres local/", migrate.StandardOutput);
        Assert.Contains("twsbp/dev (postgres local/", migrate.StandardOutput);
        Assert.Contains("up to date at version 2", migrate.StandardOutput);
        Assert.Contains("workspaces migrate: 2 ok, 1 failed (other/gone), in ", migrate.StandardOutput);
        Assert.Equal("dev:ready gone:unreachable qa:ready", await database.ScalarAsync<string>(
            "SELECT string_agg(name || ':' || status, ' ' ORDER BY name) FROM workspace_environments"));
        Assert.Contains("does not exist", await database.ScalarAsync<string>("SELECT last_error FROM workspace_environments WHERE name = 'gone'"));

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

        // The default run reports the failing environment but does not fail the start of everything else.
        var again = await Worker();
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("workspaces migrate: 2 ok, 1 failed", again.StandardOutput);
    }
}
