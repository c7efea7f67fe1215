using Microsoft.EntityFrameworkCore;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>
/// The migration that made production an attribute keeps what the old name rule said for existing environments
/// (prod, production, prod-*), and nothing else: prd, live, production-eu stay non-production, for an Admin to mark.
/// </summary>
public sealed class ProductionAttributeMigrationTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private const string Migration = "EnvironmentProductionAndPublishedChecksum";

    [Fact]
    public async Task Existing_environments_named_prod_production_or_prod_dash_become_production()
    {
        string[] names = ["prod", "production", "prod-eu", "prd", "live", "production-eu", "dev", "preprod"];
        await using (var db = database.CreateDbContext())
        {
            var role = db.Roles.Local.FirstOrDefault() ?? await db.Roles.FirstOrDefaultAsync() ?? db.Roles.Add(new Role { Name = Role.User }).Entity;
            var user = new User { Username = "migration-" + Guid.NewGuid().ToString("N")[..8], PasswordHash = "x", RoleId = role.Id };
            var workspace = new Workspace { Name = "before", Slug = "before-" + Guid.NewGuid().ToString("N")[..8], CreatedBy = user.Id };
            db.Users.Add(user);
            db.Workspaces.Add(workspace);
            foreach (var name in names)
            {
                db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
                {
                    WorkspaceId = workspace.Id, Name = name, Provider = WorkspaceProviders.Postgres, Server = "local",
                    DatabaseName = "db_" + name.Replace('-', '_'),
                });
            }
            await db.SaveChangesAsync();

            // Back to the schema before the attribute existed, then forward again, as an upgrade runs it.
            var migrator = new SystemDatabaseMigrator(db);
            var index = migrator.AllMigrations.ToList().FindIndex(m => m.EndsWith(Migration, StringComparison.Ordinal));
            var previous = migrator.AllMigrations[index - 1];
            await migrator.RevertAsync(previous);
            Assert.Equal(0L, await database.ScalarAsync<long>(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'workspace_environments' AND column_name = 'is_production'"));
            await migrator.MigrateAsync(null);
        }

        var production = await database.ColumnAsync("SELECT name FROM workspace_environments WHERE is_production ORDER BY name");
        Assert.Equal(["prod", "prod-eu", "production"], production);
    }
}
