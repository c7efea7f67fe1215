using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.SystemDatabase;

namespace TcStudio.Tests.Branches;

/// <summary>
/// <c>branch create|list|delete</c> through the real worker: copies of the system database (by template when idle,
/// by pg_dump | pg_restore while in use, without ending anyone's session) and of a workspace database (detached, with
/// a role of its own), a migration tried on a branch, and the refusals.
/// </summary>
public sealed class DatabaseBranchTests(SystemDatabaseFixture system) : IClassFixture<SystemDatabaseFixture>, IAsyncLifetime
{
    private readonly List<string> _databases = [];

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var name in _databases) await system.Server.DropDatabaseAsync(name);
    }

    private async Task<string> NewDatabaseAsync(bool migrated)
    {
        var name = await system.Server.CreateDatabaseAsync(migrated);
        _databases.Add(name);
        return name;
    }

    private string Branch(string source, string suffix)
    {
        var name = $"{source}_{suffix}";
        _databases.Add(name);
        return name;
    }

    private Task<ProcessResult> Worker(string systemDatabase, params string[] arguments) =>
        MigrationWorkerRunner.RunAsync(system.Server.ConnectionString(systemDatabase), arguments);

    [Fact]
    public async Task An_idle_system_database_is_branched_by_template_with_the_same_rows_and_a_migration_on_the_branch_leaves_it_alone()
    {
        var all = system.CreateDbContext().Database.GetMigrations().ToList();
        var source = await NewDatabaseAsync(migrated: false);
        var partial = await Worker(source, "migrate", "--to", all[^2]);
        Assert.True(partial.ExitCode == 0, partial.ToString());
        await system.Server.ExecuteInAsync(source, "CREATE TABLE branch_probe (id int PRIMARY KEY, note text); "
            + "INSERT INTO branch_probe SELECT g, 'row ' || g FROM generate_series(1, 1500) g;");
        var branch = Branch(source, "try");

        var created = await Worker(source, "branch", "create", branch);

        Assert.True(created.ExitCode == 0, created.ToString());
        Assert.Contains($"branch create: '{branch}' from '{source}' by CREATE DATABASE … TEMPLATE in ", created.StandardOutput);
        Assert.Equal(await RowCountsAsync(source), await RowCountsAsync(branch));
        var listed = await Worker(source, "branch", "list");
        Assert.Contains($"{branch}  from {source}  at ", listed.StandardOutput);
        Assert.Contains("branch list: 1 branch(es).", listed.StandardOutput);

        // Point the worker at the branch and migrate it: the source stays where it was.
        var migrated = await Worker(branch, "migrate");
        Assert.True(migrated.ExitCode == 0, migrated.ToString());
        Assert.Equal(all.Count, await system.Server.ScalarInAsync<long>(branch, "SELECT count(*) FROM migrations"));
        Assert.Equal(all.Count - 1, await system.Server.ScalarInAsync<long>(source, "SELECT count(*) FROM migrations"));

        var deleted = await Worker(source, "branch", "delete", branch);
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.Contains($"branch delete: dropped '{branch}' (a branch of '{source}').", deleted.StandardOutput);
        Assert.False(await DatabaseExistsAsync(branch));
        Assert.True(await DatabaseExistsAsync(source));
        Assert.Contains("branch list: 0 branch(es).", (await Worker(source, "branch", "list")).StandardOutput);
    }

    [Fact]
    public async Task A_system_database_in_use_is_copied_by_dump_and_restore_and_its_sessions_are_left_alone()
    {
        var source = await NewDatabaseAsync(migrated: true);
        await system.Server.ExecuteInAsync(source, "CREATE TABLE branch_probe AS SELECT g AS id FROM generate_series(1, 2000) g");
        var branch = Branch(source, "busy");
        await using var session = new NpgsqlConnection(system.Server.ConnectionString(source, pooling: false));
        await session.OpenAsync();

        var created = await Worker(source, "branch", "create", branch);

        Assert.True(created.ExitCode == 0, created.ToString());
        Assert.Contains($"branch create: '{source}' is in use; copying it with pg_dump | pg_restore (its sessions are left alone)",
            created.StandardOutput);
        Assert.Matches(@"branch create: copied [\d.]+ (B|KiB|MiB) of '", created.StandardOutput);
        Assert.Contains($"from '{source}' by pg_dump | pg_restore in ", created.StandardOutput);
        await using (var stillThere = new NpgsqlCommand("SELECT 1", session))
        {
            Assert.Equal(1, await stillThere.ExecuteScalarAsync());
        }
        Assert.Equal(await RowCountsAsync(source), await RowCountsAsync(branch));
    }

    [Fact]
    public async Task A_branch_of_a_workspace_database_is_detached_owned_by_a_role_of_its_own_and_delete_removes_both()
    {
        var workspace = await NewDatabaseAsync(migrated: false);
        var environmentRole = $"tcws_{Guid.NewGuid():N}_owner";
        var workspaceId = Guid.NewGuid();
        await system.Server.ExecuteAsync($"CREATE ROLE {environmentRole} NOLOGIN");
        try
        {
            await system.Server.ExecuteInAsync(workspace, $"""
                CREATE SCHEMA tcstudio_ownership;
                CREATE TABLE tcstudio_ownership.marker (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                    workspace_id uuid NOT NULL, environment_id uuid NOT NULL, database_id uuid NOT NULL,
                    server_identity text NOT NULL, written_at timestamptz NOT NULL DEFAULT now());
                INSERT INTO tcstudio_ownership.marker
                    VALUES (true, '{workspaceId}', '{Guid.NewGuid()}', '{Guid.NewGuid()}', 'postgres://localhost:5432');
                GRANT CREATE ON SCHEMA public TO {environmentRole};
                SET ROLE {environmentRole};
                CREATE TABLE public.orders (id int PRIMARY KEY, total numeric);
                INSERT INTO public.orders SELECT g, g * 1.5 FROM generate_series(1, 700) g;
                RESET ROLE;
                """);
            var branch = Branch(workspace, "ws");

            var created = await Worker(system.DatabaseName, "branch", "create", branch, "--from", workspace);

            Assert.True(created.ExitCode == 0, created.ToString());
            Assert.Contains($"'{workspace}' is a workspace database; copying it without its environment's roles", created.StandardOutput);
            Assert.Equal(await RowCountsAsync(workspace, "orders"), await RowCountsAsync(branch, "orders"));
            Assert.Equal("00000000-0000-0000-0000-000000000000|00000000-0000-0000-0000-000000000000|" + workspace,
                await system.Server.ScalarInAsync<string>(branch,
                    "SELECT workspace_id || '|' || environment_id || '|' || branch_of FROM tcstudio_ownership.marker"));
            Assert.Equal(workspaceId, await system.Server.ScalarInAsync<Guid>(workspace, "SELECT workspace_id FROM tcstudio_ownership.marker"));
            // Nothing in the branch names the environment's role: deleting that environment later is not blocked by it.
            Assert.Equal(0L, await system.Server.ScalarInAsync<long>(branch,
                $"SELECT count(*) FROM pg_class WHERE relowner = '{environmentRole}'::regrole"));
            var branchRole = await system.Server.ScalarInAsync<string>(branch, "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'");
            Assert.StartsWith("tcbranch_", branchRole);
            Assert.Contains($"(detached workspace branch, role {branchRole})", (await Worker(system.DatabaseName, "branch", "list")).StandardOutput);

            var deleted = await Worker(system.DatabaseName, "branch", "delete", branch);

            Assert.True(deleted.ExitCode == 0, deleted.ToString());
            Assert.Contains($"and its role {branchRole}.", deleted.StandardOutput);
            Assert.False(await DatabaseExistsAsync(branch));
            Assert.Equal(0L, await system.Server.ScalarInAsync<long>(workspace, $"SELECT count(*) FROM pg_roles WHERE rolname = '{branchRole}'"));
        }
        finally
        {
            await system.Server.DropDatabaseAsync(workspace);
            await system.Server.ExecuteAsync($"DROP ROLE IF EXISTS {environmentRole}");
        }
    }

    [Fact]
    public async Task Branches_are_refused_in_Production_and_delete_never_drops_a_database_that_is_not_a_branch()
    {
        var environment = MigrationWorkerRunner.Environment(system.ConnectionString, environment: "Production");
        var production = await MigrationWorkerRunner.RunAsync(environment, "branch", "create", "anything");
        Assert.Equal(2, production.ExitCode);
        // Production logs its connection at Information on stderr, from the console logger's own thread: the verb's
        // answer is one whole line of stderr, not always the last.
        Assert.Contains("branch create: branch create is refused in the Production environment: branches are for development "
            + "(DOTNET_ENVIRONMENT is Production).",
            production.StandardError.Split('\n').Select(line => line.TrimEnd('\r')));

        var notABranch = await Worker(system.DatabaseName, "branch", "delete", system.DatabaseName);
        Assert.Equal(1, notABranch.ExitCode);
        Assert.Contains($"branch delete: '{system.DatabaseName}' is not a branch (branch delete drops only databases branch create made).",
            notABranch.StandardError.Split('\n').Select(line => line.TrimEnd('\r')));
        Assert.True(await DatabaseExistsAsync(system.DatabaseName));

        var foreign = await Worker(system.DatabaseName, "branch", "create", $"{system.DatabaseName}_pg", "--from", "postgres");
        Assert.Equal(1, foreign.ExitCode);
        Assert.Contains("'postgres' is not one of TC Studio's databases", foreign.StandardError);
        Assert.False(await DatabaseExistsAsync($"{system.DatabaseName}_pg"));

        var badName = await Worker(system.DatabaseName, "branch", "create", "Robert\"; DROP DATABASE x; --");
        Assert.Equal(2, badName.ExitCode);
        Assert.Contains("is not a branch name: use 1–63 characters", badName.StandardError);
    }

    private async Task<Dictionary<string, long>> RowCountsAsync(string database, params string[] only)
    {
        await using var connection = new NpgsqlConnection(system.Server.ConnectionString(database, pooling: false));
        await connection.OpenAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            + "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync()) tables.Add(reader.GetString(0));
        }
        var counts = new Dictionary<string, long>();
        foreach (var table in tables.Where(t => only.Length == 0 || only.Any(o => t.EndsWith("." + o, StringComparison.Ordinal))))
        {
            await using var count = new NpgsqlCommand($"SELECT count(*) FROM {table}", connection);
            counts[table] = (long)(await count.ExecuteScalarAsync())!;
        }
        Assert.NotEmpty(counts);
        return counts;
    }

    private async Task<bool> DatabaseExistsAsync(string name) =>
        await system.Server.ScalarInAsync<bool>("postgres", $"SELECT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')");
}
