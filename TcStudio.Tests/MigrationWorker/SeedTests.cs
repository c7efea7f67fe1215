using Microsoft.EntityFrameworkCore;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>The seed is exact, idempotent, fills only gaps, and refuses to invent passwords in Production.</summary>
public sealed class SeedTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private const string Snapshot = """
        SELECT string_agg(line, E'\n' ORDER BY line) FROM (
            SELECT 'role ' || id || ' ' || name || ' ' || created_at || ' ' || updated_at AS line FROM roles
            UNION ALL SELECT 'user ' || id || ' ' || username || ' ' || password_hash || ' ' || role_id || ' ' || created_at || ' ' || updated_at
                FROM users
            UNION ALL SELECT 'workspace ' || id || ' ' || slug || ' ' || member_count || ' ' || created_by || ' ' || created_at || ' ' || updated_at
                FROM workspaces
            UNION ALL SELECT 'member ' || workspace_id || ' ' || user_id || ' ' || role || ' ' || joined_at FROM workspace_members
        ) lines
        """;

    [Fact]
    public async Task Seeding_creates_exactly_the_documented_rows_and_a_second_run_changes_nothing()
    {
        var first = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "seed");
        Assert.True(first.ExitCode == 0, first.ToString());
        var before = await database.ScalarAsync<string>(Snapshot);

        await using (var db = database.CreateDbContext())
        {
            Assert.Equal(["Admin", "User"], await db.Roles.OrderBy(r => r.Name).Select(r => r.Name).ToListAsync());
            var users = await db.Users.Include(u => u.Role).OrderBy(u => u.Username).ToListAsync();
            Assert.Equal(["admin", "user"], users.Select(u => u.Username));
            Assert.Equal(["Admin", "User"], users.Select(u => u.Role!.Name));
            Assert.All(users, u => Assert.StartsWith("AQAAAA", u.PasswordHash)); // Identity v3 PBKDF2 format, never plain
            var workspace = await db.Workspaces.SingleAsync();
            Assert.Equal(("TWSBP", "twsbp", 2), (workspace.Name, workspace.Slug, workspace.MemberCount));
            Assert.Equal(users[0].Id, workspace.CreatedBy);
            var members = await db.WorkspaceMembers.OrderBy(m => m.Role).Select(m => m.User!.Username + ":" + m.Role).ToListAsync();
            Assert.Equal(["user:Member", "admin:Owner"], members);
        }

        var second = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "seed");
        Assert.Equal(0, second.ExitCode);
        Assert.Contains("seed: nothing to do", second.StandardOutput);
        Assert.Equal(before, await database.ScalarAsync<string>(Snapshot));

        // Only the missing parts are created when some of the seed is gone.
        await database.ExecuteAsync("DELETE FROM workspace_members WHERE user_id = (SELECT id FROM users WHERE username = 'user')");
        await database.ExecuteAsync("DELETE FROM users WHERE username = 'user'");
        var adminBefore = await database.ScalarAsync<string>("SELECT id || password_hash || updated_at FROM users WHERE username = 'admin'");

        var refill = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "seed");
        Assert.True(refill.ExitCode == 0, refill.ToString());
        Assert.Contains("created user user", refill.StandardOutput);
        Assert.Contains("created membership user as Member of twsbp", refill.StandardOutput);
        Assert.DoesNotContain("created role", refill.StandardOutput);
        Assert.DoesNotContain("created workspace", refill.StandardOutput);
        Assert.Equal(adminBefore, await database.ScalarAsync<string>("SELECT id || password_hash || updated_at FROM users WHERE username = 'admin'"));
        Assert.Equal(2, await database.ScalarAsync<int>("SELECT member_count FROM workspaces WHERE slug = 'twsbp'"));
    }

    [Fact]
    public async Task Production_refuses_to_seed_users_without_configured_passwords()
    {
        var fresh = await database.Server.CreateDatabaseAsync();
        try
        {
            var environment = MigrationWorkerRunner.Environment(database.Server.ConnectionString(fresh), "Production");
            var refused = await MigrationWorkerRunner.RunAsync(environment, "seed");
            Assert.Equal(2, refused.ExitCode);
            Assert.Contains("Seed:AdminPassword", refused.StandardError);
            // One reason line; a "waiting for PostgreSQL" progress line may come first when the machine is loaded.
            Assert.Single(refused.StandardError.Trim().Split('\n'), l => l.StartsWith("seed:") && !l.StartsWith("seed: waiting for PostgreSQL"));

            // The documented Development passwords are refused too, even when configured explicitly.
            environment["Seed__AdminPassword"] = TcStudio.SystemDatabase.Seeding.SeedOptions.DevelopmentAdminPassword;
            environment["Seed__UserPassword"] = "a-long-production-secret-2";
            var development = await MigrationWorkerRunner.RunAsync(environment, "seed");
            Assert.Equal(2, development.ExitCode);
            Assert.Contains("Seed:AdminPassword", development.StandardError);
            Assert.DoesNotContain(TcStudio.SystemDatabase.Seeding.SeedOptions.DevelopmentAdminPassword, development.AllOutput);
            await using (var connection = new Npgsql.NpgsqlConnection(database.Server.ConnectionString(fresh, pooling: false)))
            {
                await connection.OpenAsync();
                await using var count = new Npgsql.NpgsqlCommand("SELECT count(*) FROM users", connection);
                Assert.Equal(0L, (long)(await count.ExecuteScalarAsync())!);
            }

            environment["Seed__AdminPassword"] = "a-long-production-secret-1";
            environment["Seed__UserPassword"] = "a-long-production-secret-2";
            var seeded = await MigrationWorkerRunner.RunAsync(environment, "seed");
            Assert.True(seeded.ExitCode == 0, seeded.ToString());
            Assert.DoesNotContain("a-long-production-secret", seeded.AllOutput);
        }
        finally
        {
            await database.Server.DropDatabaseAsync(fresh);
        }
    }
}
