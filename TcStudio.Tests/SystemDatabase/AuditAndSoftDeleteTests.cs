using Microsoft.EntityFrameworkCore;
using TcStudio.SystemDatabase.Entities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.SystemDatabase;

public sealed class AuditAndSoftDeleteTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private sealed class ManualClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public async Task Created_at_and_updated_at_are_stamped_by_the_interceptor_in_utc()
    {
        var clock = new ManualClock(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero));
        await using var db = database.CreateDbContext(clock);
        var role = new Role { Name = Role.Admin, Description = "first" };
        db.Roles.Add(role);
        await db.SaveChangesAsync();

        clock.Now = clock.Now.AddHours(1);
        role.Description = "second";
        role.CreatedAt = DateTimeOffset.MinValue; // a handler's mistake must not move created_at
        await db.SaveChangesAsync();

        await using var fresh = database.CreateDbContext();
        var stored = await fresh.Roles.AsNoTracking().SingleAsync(r => r.Id == role.Id);
        Assert.Equal(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero), stored.CreatedAt);
        Assert.Equal(new DateTimeOffset(2026, 1, 2, 4, 4, 5, TimeSpan.Zero), stored.UpdatedAt);
        Assert.Equal(TimeSpan.Zero, stored.UpdatedAt.Offset);
    }

    [Fact]
    public async Task Keys_are_time_ordered_version_7_uuids()
    {
        var first = new Activity { Action = "system.tested", EntityType = "system" };
        var second = new Activity { Action = "system.tested", EntityType = "system" };
        Assert.Equal(7, first.Id.Version);
        Assert.True(first.Id.CompareTo(second.Id) < 0 || first.Id.ToString()[..8] == second.Id.ToString()[..8]);

        await using var db = database.CreateDbContext();
        db.Activities.AddRange(first, second);
        await db.SaveChangesAsync();
        Assert.Equal(2, await db.Activities.CountAsync(a => a.Id == first.Id || a.Id == second.Id));
    }

    [Fact]
    public async Task Soft_deleted_users_and_workspaces_are_hidden_but_still_there()
    {
        await using var db = database.CreateDbContext();
        var role = await db.Roles.FirstOrDefaultAsync() ?? db.Roles.Add(new Role { Name = Role.User }).Entity;
        var user = new User { Username = "ghost" + Random.Shared.Next(1000, 9999), PasswordHash = "x", RoleId = role.Id };
        db.Users.Add(user);
        var workspace = new Workspace { Name = "Ghost", Slug = "ghost-" + Random.Shared.Next(1000, 9999), CreatedBy = user.Id };
        db.Workspaces.Add(workspace);
        await db.SaveChangesAsync();

        user.DeletedAt = workspace.DeletedAt = DateTimeOffset.UtcNow;
        await db.SaveChangesAsync();

        Assert.False(await db.Users.AnyAsync(u => u.Id == user.Id));
        Assert.False(await db.Workspaces.AnyAsync(w => w.Id == workspace.Id));
        Assert.True(await db.Users.IgnoreQueryFilters().AnyAsync(u => u.Id == user.Id));
        Assert.True(await db.Workspaces.IgnoreQueryFilters().AnyAsync(w => w.Id == workspace.Id));
    }

    [Fact]
    public async Task Full_text_search_finds_procedures_by_name_and_by_words_in_their_sql()
    {
        await using var db = database.CreateDbContext();
        var role = await db.Roles.FirstOrDefaultAsync() ?? db.Roles.Add(new Role { Name = Role.User }).Entity;
        var user = new User { Username = "searcher" + Random.Shared.Next(1000, 9999), PasswordHash = "x", RoleId = role.Id };
        var workspace = new Workspace { Name = "Search", Slug = "search-" + Random.Shared.Next(1000, 9999), CreatedBy = user.Id };
        db.AddRange(user, workspace);
        db.StoredProcedures.AddRange(
            new StoredProcedure { WorkspaceId = workspace.Id, Name = "get_invoices", SqlDraft = "SELECT * FROM invoices", CreatedBy = user.Id },
            new StoredProcedure { WorkspaceId = workspace.Id, Name = "list_customers", SqlDraft = "SELECT name FROM customers",
                CreatedBy = user.Id });
        await db.SaveChangesAsync();

        var hits = await db.StoredProcedures
            .Where(p => p.WorkspaceId == workspace.Id && p.SearchVector!.Matches(EF.Functions.PlainToTsQuery("simple", "customers")))
            .Select(p => p.Name).ToListAsync();

        Assert.Equal(["list_customers"], hits);
    }
}
