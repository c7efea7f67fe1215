using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.SystemDatabase.Entities;
using TcStudio.SystemDatabase.Migrations;
using TcStudio.SystemDatabase.Security;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Security;

/// <summary>A migrated system database with its roles and two workspaces that have a row in every workspace-scoped table.</summary>
public sealed class TwoWorkspacesFixture(PostgresServer server) : SystemDatabaseFixture(server)
{
    public string AppPassword { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
    public SystemRoleNames Names => SystemRoleNames.For(DatabaseName);
    public Guid WorkspaceA { get; private set; }
    public Guid WorkspaceB { get; private set; }
    public Guid SharedUser { get; private set; }
    public Guid OtherUser { get; private set; }

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        await SystemDatabaseRoles.EnsureAsync(ConnectionString, Names, new SystemDatabaseRoles.Passwords(null, AppPassword, null));

        // Written as the superuser (not subject to row-level security).
        await using var db = CreateDbContext();
        var role = await db.Roles.FirstOrDefaultAsync() ?? new Role { Name = Role.All[0] };
        if (db.Entry(role).State == EntityState.Detached) db.Add(role);
        var shared = new User { Username = "shared", PasswordHash = "x", RoleId = role.Id };
        var other = new User { Username = "other", PasswordHash = "x", RoleId = role.Id };
        db.AddRange(shared, other);
        foreach (var slug in new[] { "alpha", "beta" })
        {
            var workspace = new Workspace { Name = slug, Slug = slug, CreatedBy = shared.Id };
            db.Add(workspace);
            db.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = shared.Id,
                Role = TcStudio.SystemDatabase.Entities.WorkspaceRoles.Owner });
            db.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = other.Id,
                Role = TcStudio.SystemDatabase.Entities.WorkspaceRoles.Member });
            var environment = new WorkspaceEnvironment
            {
                WorkspaceId = workspace.Id, Name = "dev", Provider = WorkspaceProviders.Postgres, Server = "local", DatabaseName = $"db_{slug}",
            };
            db.Add(environment);
            db.Add(new StoredProcedure { WorkspaceId = workspace.Id, Name = $"proc_{slug}", CreatedBy = shared.Id });
            db.Add(new Activity { WorkspaceId = workspace.Id, UserId = shared.Id, Action = "workspace.created", EntityType = EntityTypes.Workspace });
            db.Add(new WorkspaceDatabase
            {
                ServerIdentity = "test", Server = "local", Provider = WorkspaceProviders.Postgres, DatabaseName = $"db_{slug}",
                WorkspaceId = workspace.Id, EnvironmentId = environment.Id,
            });
            if (slug == "alpha") WorkspaceA = workspace.Id; else WorkspaceB = workspace.Id;
        }
        await db.SaveChangesAsync();
        (SharedUser, OtherUser) = (shared.Id, other.Id);
    }
}

/// <summary>
/// The system database's roles (created by the worker's `roles` step) and row-level security, seen through raw SQL
/// as the API's app role: what PostgreSQL itself refuses, whatever a query remembers or forgets.
/// </summary>
public sealed class RowLevelSecurityTests(TwoWorkspacesFixture database) : IClassFixture<TwoWorkspacesFixture>
{
    private SystemRoleNames Names => database.Names;

    private async Task<NpgsqlConnection> OpenAsAppAsync()
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(database.ConnectionString)
        {
            Username = Names.App, Password = database.AppPassword, Pooling = false,
        }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<List<Guid>> WorkspaceIdsAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string table)
    {
        await using var command = new NpgsqlCommand($"SELECT workspace_id FROM {table}", connection, transaction);
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new List<Guid>();
        while (await reader.ReadAsync()) ids.Add(reader.GetGuid(0));
        return ids;
    }

    private static async Task SetAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string name, Guid value)
    {
        await using var command = new NpgsqlCommand("SELECT set_config($1, $2, true)", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = name });
        command.Parameters.Add(new NpgsqlParameter { Value = value.ToString() });
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task The_app_role_is_not_privileged_and_may_not_create_tables()
    {
        await using var app = await OpenAsAppAsync();
        await using (var command = new NpgsqlCommand(
            "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user", app))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal(new[] { false, false, false, false },
                new[] { reader.GetBoolean(0), reader.GetBoolean(1), reader.GetBoolean(2), reader.GetBoolean(3) });
        }
        await using var create = new NpgsqlCommand("CREATE TABLE app_made (id int)", app);
        var refused = await Assert.ThrowsAsync<PostgresException>(() => create.ExecuteNonQueryAsync());
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, refused.SqlState);

        // DML it has; the migration history it only reads; pg_read_all_stats for the insights.
        await using var history = new NpgsqlCommand("DELETE FROM migrations", app);
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege,
            (await Assert.ThrowsAsync<PostgresException>(() => history.ExecuteNonQueryAsync())).SqlState);
        await using var stats = new NpgsqlCommand("SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')", app);
        Assert.True(await stats.ExecuteScalarAsync() is true);
    }

    [Fact]
    public async Task Without_a_workspace_setting_the_app_role_reads_no_workspace_rows_and_may_write_none()
    {
        await using var app = await OpenAsAppAsync();
        foreach (var table in RowLevelSecurityPolicies.WorkspaceScopedTables)
        {
            Assert.NotEmpty(await database.ColumnAsync($"SELECT workspace_id FROM {table}")); // the superuser sees them
            Assert.Empty(await WorkspaceIdsAsync(app, null, table));
        }

        await using var insert = new NpgsqlCommand(
            "INSERT INTO stored_procedures (id, workspace_id, name, status, sql_draft, created_by, created_at, updated_at) "
            + "VALUES (gen_random_uuid(), $1, 'sneaky', 'draft', '', $2, now(), now())", app);
        insert.Parameters.Add(new NpgsqlParameter { Value = database.WorkspaceA });
        insert.Parameters.Add(new NpgsqlParameter { Value = database.SharedUser });
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege,
            (await Assert.ThrowsAsync<PostgresException>(() => insert.ExecuteNonQueryAsync())).SqlState);

        foreach (var table in RowLevelSecurityPolicies.WorkspaceScopedTables)
        {
            await using var delete = new NpgsqlCommand($"DELETE FROM {table}", app);
            Assert.Equal(0, await delete.ExecuteNonQueryAsync());
        }
        await using var update = new NpgsqlCommand("UPDATE workspace_members SET role = 'Owner'", app);
        Assert.Equal(0, await update.ExecuteNonQueryAsync());
        Assert.Equal(4L, await database.ScalarAsync<long>("SELECT count(*) FROM workspace_members WHERE role IN ('Owner', 'Member')"));
    }

    [Fact]
    public async Task With_workspace_A_set_the_rows_of_B_are_invisible_even_to_a_query_that_forgets_its_filter()
    {
        await using var app = await OpenAsAppAsync();
        await using (var transaction = await app.BeginTransactionAsync())
        {
            await SetAsync(app, transaction, "tcstudio.workspace_id", database.WorkspaceA);
            foreach (var table in RowLevelSecurityPolicies.WorkspaceScopedTables)
            {
                var ids = await WorkspaceIdsAsync(app, transaction, table);
                Assert.NotEmpty(ids);
                Assert.All(ids, id => Assert.Equal(database.WorkspaceA, id));
            }

            // Writing into B from A's transaction is refused, and B's rows cannot be changed from it.
            await using var insert = new NpgsqlCommand(
                "INSERT INTO stored_procedures (id, workspace_id, name, status, sql_draft, created_by, created_at, updated_at) "
                + "VALUES (gen_random_uuid(), $1, 'sneaky', 'draft', '', $2, now(), now())", app, transaction);
            insert.Parameters.Add(new NpgsqlParameter { Value = database.WorkspaceB });
            insert.Parameters.Add(new NpgsqlParameter { Value = database.SharedUser });
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege,
                (await Assert.ThrowsAsync<PostgresException>(() => insert.ExecuteNonQueryAsync())).SqlState);
        }
        await using (var transaction = await app.BeginTransactionAsync())
        {
            await SetAsync(app, transaction, "tcstudio.workspace_id", database.WorkspaceA);
            await using var move = new NpgsqlCommand("UPDATE stored_procedures SET workspace_id = $1", app, transaction);
            move.Parameters.Add(new NpgsqlParameter { Value = database.WorkspaceB });
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege,
                (await Assert.ThrowsAsync<PostgresException>(() => move.ExecuteNonQueryAsync())).SqlState);
        }

        // The setting was transaction-local: the next transaction on the same connection sees nothing again.
        Assert.Empty(await WorkspaceIdsAsync(app, null, "stored_procedures"));
    }

    [Fact]
    public async Task A_user_reads_their_own_memberships_across_workspaces_and_nobody_elses()
    {
        await using var app = await OpenAsAppAsync();
        await using var transaction = await app.BeginTransactionAsync();
        await SetAsync(app, transaction, "tcstudio.user_id", database.SharedUser);
        await using var command = new NpgsqlCommand("SELECT workspace_id, user_id FROM workspace_members", app, transaction);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(Guid Workspace, Guid User)>();
        while (await reader.ReadAsync()) rows.Add((reader.GetGuid(0), reader.GetGuid(1)));
        Assert.Equal(new[] { (database.WorkspaceA, database.SharedUser), (database.WorkspaceB, database.SharedUser) },
            rows.OrderBy(r => r.Workspace == database.WorkspaceB).ToArray());
        Assert.DoesNotContain(rows, r => r.User == database.OtherUser);
    }

    [Fact]
    public async Task Every_table_with_a_workspace_id_has_forced_row_level_security_and_a_policy()
    {
        var scoped = await database.ColumnAsync("""
            SELECT c.relname || ' ' || c.relrowsecurity || ' ' || c.relforcerowsecurity || ' '
                   || (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped)
            ORDER BY c.relname COLLATE "C"
            """);
        Assert.NotEmpty(scoped);
        Assert.All(scoped, row => Assert.Matches(@"^\w+ true true [1-9]\d*$", row));
        Assert.Equal(RowLevelSecurityPolicies.WorkspaceScopedTables.Order(StringComparer.Ordinal), scoped.Select(row => row.Split(' ')[0]));
    }

    [Fact]
    public async Task The_roles_step_is_idempotent_puts_drifted_roles_back_and_hands_the_schema_to_the_owner()
    {
        await database.ExecuteAsync($"ALTER ROLE {Names.App} CREATEDB BYPASSRLS");
        var lines = await SystemDatabaseRoles.EnsureAsync(database.ConnectionString, Names, new SystemDatabaseRoles.Passwords(null, null, null));
        Assert.Contains(lines, line => line.StartsWith($"checked role '{Names.App}'", StringComparison.Ordinal));

        var attributes = await database.ColumnAsync($"""
            SELECT rolname || ' ' || rolcanlogin || ' ' || rolsuper || ' ' || rolbypassrls || ' ' || rolcreatedb || ' ' || rolcreaterole
            FROM pg_roles WHERE rolname IN ('{Names.Owner}', '{Names.App}', '{Names.Backup}', '{Names.Definer}') ORDER BY rolname
            """);
        Assert.Equal(
            new[]
            {
                $"{Names.App} true false false false false",
                $"{Names.Backup} true false true false false",
                $"{Names.Definer} false false true false false",
                $"{Names.Owner} true false true false false",
            }.Order(StringComparer.Ordinal),
            attributes.Order(StringComparer.Ordinal));

        Assert.Empty(await database.ColumnAsync($"""
            SELECT c.relname || ' ' || pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND pg_get_userbyid(c.relowner) <> '{Names.Owner}'
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
            """));
        Assert.Equal(Names.Owner, await database.ScalarAsync<string>(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"));
    }

    [Fact]
    public async Task The_cross_workspace_functions_answer_only_a_system_Admin_and_adopt_only_into_the_requests_workspace()
    {
        // A signed-in user who is not a system Admin (the request's tcstudio.user_id), as the app role.
        Guid plainUser;
        await using (var db = database.CreateDbContext())
        {
            var userRole = await db.Roles.FirstOrDefaultAsync(r => r.Name == Role.User) ?? new Role { Name = Role.User };
            if (db.Entry(userRole).State == EntityState.Detached) db.Add(userRole);
            var user = new User { Username = "plain-" + Guid.NewGuid().ToString("N")[..8], PasswordHash = "x", RoleId = userRole.Id };
            db.Add(user);
            await db.SaveChangesAsync();
            plainUser = user.Id;
        }
        await using var app = await OpenAsAppAsync();

        async Task<string?> RefusalAsync(Guid caller, Guid workspace, string sql)
        {
            await using var transaction = await app.BeginTransactionAsync();
            await SetAsync(app, transaction, "tcstudio.user_id", caller);
            await SetAsync(app, transaction, "tcstudio.workspace_id", workspace);
            await using var command = new NpgsqlCommand(sql, app, transaction);
            command.Parameters.Add(new NpgsqlParameter { Value = database.SharedUser });
            command.Parameters.Add(new NpgsqlParameter { Value = database.WorkspaceB });
            try
            {
                await using var reader = await command.ExecuteReaderAsync();
                while (await reader.ReadAsync()) { }
                return null;
            }
            catch (PostgresException e)
            {
                return e.SqlState;
            }
            finally
            {
                await transaction.RollbackAsync();
            }
        }

        const string Memberships = "SELECT * FROM memberships_of_user($1)";
        const string Reattach =
            "SELECT * FROM reattach_detached_database(gen_random_uuid(), $2, 'local', NULL, NULL, NULL, NULL, now(), 'test', 'db_alpha')";
        // A plain user's request may not read another user's memberships, nor hand a claim over.
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, await RefusalAsync(plainUser, database.WorkspaceA, Memberships));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, await RefusalAsync(plainUser, database.WorkspaceB, Reattach));
        // A system Admin's request may read memberships, but adopts only into the workspace it is in (here A, not B).
        Assert.Null(await RefusalAsync(database.SharedUser, database.WorkspaceA, Memberships));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, await RefusalAsync(database.SharedUser, database.WorkspaceA, Reattach));
        // And the functions run as the definer, whose only write is to workspace_databases.
        Assert.Equal(Names.Definer, await database.ScalarAsync<string>(
            "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'reattach_detached_database'"));
        Assert.False(await database.ScalarAsync<bool>("SELECT has_table_privilege(@role, 'public.users', 'UPDATE')", ("role", Names.Definer)));
    }
}
