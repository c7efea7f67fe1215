using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Members;

/// <summary>workspaces.member_count always equals the number of memberships, however they change.</summary>
public sealed class MemberCountTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private async Task<(Workspace Workspace, List<User> Users)> ArrangeAsync(TcStudioDbContext db, int users)
    {
        var role = await db.Roles.SingleOrDefaultAsync(r => r.Name == Role.User) ?? db.Roles.Add(new Role { Name = Role.User }).Entity;
        var people = Enumerable.Range(0, users)
            .Select(i => new User { Username = $"m{Guid.NewGuid():N}"[..20], PasswordHash = "x", RoleId = role.Id }).ToList();
        db.Users.AddRange(people);
        var workspace = new Workspace { Name = "Count", Slug = $"count-{Guid.NewGuid():N}"[..20], CreatedBy = people[0].Id };
        db.Workspaces.Add(workspace);
        await db.SaveChangesAsync();
        return (workspace, people);
    }

    private async Task<int> MemberCountAsync(Guid workspaceId) =>
        await database.ScalarAsync<int>("SELECT member_count FROM workspaces WHERE id = @id", ("id", workspaceId));

    private async Task<int> ActualMembersAsync(Guid workspaceId) =>
        (int)await database.ScalarAsync<long>("SELECT count(*) FROM workspace_members WHERE workspace_id = @id", ("id", workspaceId));

    [Fact]
    public async Task Member_count_follows_adds_and_removes()
    {
        await using var db = database.CreateDbContext();
        var (workspace, users) = await ArrangeAsync(db, 4);
        Assert.Equal(0, await MemberCountAsync(workspace.Id));

        db.WorkspaceMembers.AddRange(users.Select(u =>
            new WorkspaceMember { WorkspaceId = workspace.Id, UserId = u.Id, Role = WorkspaceRoles.Member }));
        await db.SaveChangesAsync();
        Assert.Equal(4, await MemberCountAsync(workspace.Id));

        await db.WorkspaceMembers.Where(m => m.UserId == users[1].Id).ExecuteDeleteAsync();
        db.WorkspaceMembers.Remove(await db.WorkspaceMembers.SingleAsync(m => m.UserId == users[2].Id));
        await db.SaveChangesAsync();
        Assert.Equal(2, await MemberCountAsync(workspace.Id));

        // Changing a role is not a membership change.
        await db.WorkspaceMembers.Where(m => m.WorkspaceId == workspace.Id).ExecuteUpdateAsync(s =>
            s.SetProperty(m => m.Role, WorkspaceRoles.Viewer));
        Assert.Equal(2, await MemberCountAsync(workspace.Id));
        Assert.Equal(await ActualMembersAsync(workspace.Id), await MemberCountAsync(workspace.Id));
    }

    [Fact]
    public async Task Member_count_follows_a_membership_moved_to_another_workspace_and_a_user_hard_delete()
    {
        await using var db = database.CreateDbContext();
        var (first, users) = await ArrangeAsync(db, 3);
        var (second, _) = await ArrangeAsync(db, 1);
        db.WorkspaceMembers.AddRange(users.Select(u => new WorkspaceMember { WorkspaceId = first.Id, UserId = u.Id, Role = WorkspaceRoles.Member }));
        await db.SaveChangesAsync();

        await database.ExecuteAsync($"UPDATE workspace_members SET workspace_id = '{second.Id}' WHERE user_id = '{users[2].Id}'");
        Assert.Equal(2, await MemberCountAsync(first.Id));
        Assert.Equal(1, await MemberCountAsync(second.Id));

        // users[1] created nothing, so may be hard-deleted; the membership goes with them.
        await db.Users.Where(u => u.Id == users[1].Id).ExecuteDeleteAsync();
        Assert.Equal(1, await MemberCountAsync(first.Id));
        Assert.Equal(await ActualMembersAsync(first.Id), await MemberCountAsync(first.Id));
    }

    [Fact]
    public async Task Member_count_cannot_be_set_directly()
    {
        await using var db = database.CreateDbContext();
        var (workspace, _) = await ArrangeAsync(db, 1);

        var error = await Assert.ThrowsAsync<PostgresException>(() =>
            database.ExecuteAsync($"UPDATE workspaces SET member_count = 42 WHERE id = '{workspace.Id}'"));
        Assert.Equal(PostgresErrorCodes.CheckViolation, error.SqlState);

        // EF never writes it, even when a handler changes other columns.
        workspace.Name = "Renamed";
        await db.SaveChangesAsync();
        Assert.Equal(0, await MemberCountAsync(workspace.Id));
    }

    [Fact]
    public async Task Concurrent_joins_keep_the_count_exact()
    {
        await using var db = database.CreateDbContext();
        var (workspace, users) = await ArrangeAsync(db, 20);

        await Task.WhenAll(users.Select(async u =>
        {
            await using var connection = await database.OpenConnectionAsync();
            await using var insert = new NpgsqlCommand("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (@w, @u, 'Member')",
                connection);
            insert.Parameters.AddWithValue("w", workspace.Id);
            insert.Parameters.AddWithValue("u", u.Id);
            await insert.ExecuteNonQueryAsync();
        }));

        Assert.Equal(20, await MemberCountAsync(workspace.Id));
    }
}
