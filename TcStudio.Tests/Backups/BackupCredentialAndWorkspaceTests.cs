using Npgsql;
using TcStudio.MigrationWorker.Backups;

namespace TcStudio.Tests.Backups;

/// <summary>
/// The credential a backup reads with needs no more than read rights (ConnectionStrings:backup: a read-only role,
/// BYPASSRLS so that row-level security cannot hide rows from it), and `backup --workspaces` backs up each
/// workspace database the same way, reporting one that fails without stopping the others.
/// </summary>
public sealed class BackupCredentialAndWorkspaceTests(BackupFixture database) : IClassFixture<BackupFixture>
{
    [Fact]
    public async Task A_read_only_role_with_BYPASSRLS_is_enough_and_row_level_security_cannot_hide_rows_from_it()
    {
        using var directory = BackupFixture.NewDirectory("readonly");
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var reader = $"tcstudio_backup_{suffix}";
        var filtered = $"tcstudio_nobypass_{suffix}";
        const string password = "backup-test-password";
        await database.Server.ExecuteAsync($"""
            CREATE ROLE {reader} LOGIN PASSWORD '{password}' BYPASSRLS;
            GRANT pg_read_all_data TO {reader};
            CREATE ROLE {filtered} LOGIN PASSWORD '{password}';
            GRANT pg_read_all_data TO {filtered};
            """);
        try
        {
            // What the role may do: read. Nothing else.
            await using (var connection = await database.OpenConnectionAsync())
            {
                await using var rights = new NpgsqlCommand("""
                    SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
                           (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                               AND has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')),
                           (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.relkind = 'r' AND n.nspname = 'public' AND NOT has_table_privilege(r.oid, c.oid, 'SELECT')),
                           has_schema_privilege(r.oid, 'public', 'CREATE'),
                           has_database_privilege(r.oid, current_database(), 'CREATE'),
                           (SELECT string_agg(g.rolname, ',') FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid)
                      FROM pg_roles r WHERE r.rolname = @role
                    """, connection) { Parameters = { new("role", reader) } };
                await using var row = await rights.ExecuteReaderAsync();
                Assert.True(await row.ReadAsync());
                Assert.Equal((false, false, false, false, true),
                    (row.GetBoolean(0), row.GetBoolean(1), row.GetBoolean(2), row.GetBoolean(3), row.GetBoolean(4)));
                Assert.Equal(0L, row.GetInt64(5)); // no write right on any table
                Assert.Equal(0L, row.GetInt64(6)); // but it reads every table
                Assert.False(row.GetBoolean(7));
                Assert.False(row.GetBoolean(8));
                Assert.Equal("pg_read_all_data", row.GetString(9));
            }
            var asReader = new NpgsqlConnectionStringBuilder(database.ConnectionString) { Username = reader, Password = password, Pooling = false };
            await using (var connection = new NpgsqlConnection(asReader.ConnectionString))
            {
                await connection.OpenAsync();
                await using var write = new NpgsqlCommand("DELETE FROM activities", connection);
                Assert.Equal(PostgresErrorCodes.InsufficientPrivilege,
                    (await Assert.ThrowsAsync<PostgresException>(() => write.ExecuteNonQueryAsync())).SqlState);
            }

            // Row-level security on a table (a policy that shows nothing): the BYPASSRLS reader still backs up every row.
            await database.ExecuteAsync(
                "ALTER TABLE activities ENABLE ROW LEVEL SECURITY; CREATE POLICY hide_everything ON activities USING (false)");
            var environment = database.WorkerEnvironment(directory.Path);
            environment["ConnectionStrings__backup"] = asReader.ConnectionString;
            var backup = await database.WorkerAsync(environment, "backup");
            Assert.True(backup.ExitCode == 0, backup.ToString());
            Assert.Contains($"as {reader}", backup.StandardOutput);
            var dump = Directory.GetFiles(directory.Path, "*.dump").Single();
            var manifest = await BackupManifest.ReadAsync(dump, CancellationToken.None);
            Assert.Equal(reader, manifest.Role);
            Assert.Equal(400, manifest.Tables.Single(t => t.Table == "public.activities").Rows);
            var verify = await database.WorkerAsync(directory.Path, "backup", "verify", dump);
            Assert.True(verify.ExitCode == 0, verify.ToString());

            // A reader subject to row-level security is refused rather than handed a silently partial backup.
            environment["ConnectionStrings__backup"] = asReader.ConnectionString.Replace(reader, filtered);
            var partial = await database.WorkerAsync(environment, "backup");
            Assert.Equal(1, partial.ExitCode);
            Assert.True(partial.StandardError.Contains("row-level security"), partial.ToString());
            Assert.Single(Directory.GetFiles(directory.Path, "*.dump"));
        }
        finally
        {
            await database.ExecuteAsync("DROP POLICY IF EXISTS hide_everything ON activities; ALTER TABLE activities DISABLE ROW LEVEL SECURITY");
            await database.Server.ExecuteAsync($"DROP OWNED BY {reader}, {filtered}; DROP ROLE IF EXISTS {reader}; DROP ROLE IF EXISTS {filtered}");
        }
    }

    [Fact]
    public async Task Backup_with_workspaces_backs_up_each_workspace_database_and_goes_on_past_one_that_fails()
    {
        using var directory = BackupFixture.NewDirectory("workspaces");
        await database.ExecuteAsync("""
            INSERT INTO workspaces (id, name, slug, created_by, created_at, updated_at, settings)
            SELECT gen_random_uuid(), 'Elsewhere', 'elsewhere', id, now(), now(), jsonb_build_object() FROM users WHERE username = 'admin';
            INSERT INTO workspace_environments (id, workspace_id, name, provider, server, database_name, status, schema_version, created_at,
                updated_at)
            SELECT gen_random_uuid(), id, 'prod', 'sqlserver', 'sql', 'elsewhere_prod', 'ready', 2, now(), now() FROM workspaces
                WHERE slug = 'elsewhere';
            """);
        try
        {
            var backup = await database.WorkerAsync(directory.Path, "backup", "--workspaces");
            Assert.Equal(1, backup.ExitCode);
            Assert.Contains("backup --workspaces: 2 workspace databases", backup.StandardOutput);
            Assert.Contains($"  twsbp/dev (postgres local/{database.DevDatabase})", backup.StandardOutput);
            Assert.Matches(@"(?m)^  elsewhere/prod \(sqlserver sql/elsewhere_prod\)\r?\n    FAILED: server 'sql' is not registered",
                backup.StandardOutput);
            Assert.Matches(@"; workspaces: 1 backed up, 1 failed \(elsewhere/prod\)\r?$", backup.StandardOutput.TrimEnd());
            Assert.Single(Directory.GetFiles(directory.Path, "*.dump")); // the system database's

            var dump = Directory.GetFiles(Path.Combine(directory.Path, "workspaces", "local"), "*.dump").Single();
            Assert.StartsWith(database.DevDatabase + "-", Path.GetFileName(dump));
            var manifest = await BackupManifest.ReadAsync(dump, CancellationToken.None);
            Assert.Equal(("workspace", "local", "twsbp", "dev", "2"),
                (manifest.Kind, manifest.WorkspaceServer, manifest.Workspace, manifest.Environment, manifest.SchemaVersion));
            Assert.Equal(2, manifest.Tables.Single(t => t.Table == "tcstudio.tcstudio_schema_migrations").Rows);

            var verify = await database.WorkerAsync(directory.Path, "backup", "verify", dump);
            Assert.True(verify.ExitCode == 0, verify.ToString());
            Assert.Contains("is good", verify.StandardOutput);
        }
        finally
        {
            await database.ExecuteAsync("DELETE FROM workspaces WHERE slug = 'elsewhere'");
        }
    }
}
