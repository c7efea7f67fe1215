using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>Every unique, check and foreign-key rule rejects what it should, in the database itself.</summary>
public sealed class ConstraintTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private static int _counter;
    private static string Unique(string prefix) => $"{prefix}{Interlocked.Increment(ref _counter)}x{Random.Shared.Next(100000)}";

    private async Task<(Role Role, User User, Workspace Workspace)> ArrangeWorkspaceAsync(TcStudioDbContext db)
    {
        var role = await db.Roles.SingleOrDefaultAsync(r => r.Name == Role.User)
            ?? db.Roles.Add(new Role { Name = Role.User }).Entity;
        var user = new User { Username = Unique("owner"), PasswordHash = "x", RoleId = role.Id };
        db.Users.Add(user);
        var workspace = new Workspace { Name = "W", Slug = Unique("ws-"), CreatedBy = user.Id };
        db.Workspaces.Add(workspace);
        await db.SaveChangesAsync();
        return (role, user, workspace);
    }

    private static async Task<string> SqlStateOfAsync(Func<Task> write)
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(write);
        var postgres = error as PostgresException ?? error.InnerException as PostgresException;
        Assert.NotNull(postgres);
        return postgres.SqlState;
    }

    [Fact]
    public async Task Usernames_are_unique_whatever_their_case()
    {
        await using var db = database.CreateDbContext();
        var (role, _, _) = await ArrangeWorkspaceAsync(db);
        var name = Unique("Alice");
        db.Users.Add(new User { Username = name, PasswordHash = "x", RoleId = role.Id });
        await db.SaveChangesAsync();

        db.Users.Add(new User { Username = name.ToUpperInvariant(), PasswordHash = "x", RoleId = role.Id });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task Emails_are_unique_whatever_their_case_and_may_be_absent_for_many()
    {
        await using var db = database.CreateDbContext();
        var (role, _, _) = await ArrangeWorkspaceAsync(db);
        db.Users.Add(new User { Username = Unique("a"), Email = "Same@Example.com", PasswordHash = "x", RoleId = role.Id });
        db.Users.Add(new User { Username = Unique("b"), PasswordHash = "x", RoleId = role.Id });
        db.Users.Add(new User { Username = Unique("c"), PasswordHash = "x", RoleId = role.Id });
        await db.SaveChangesAsync();

        db.Users.Add(new User { Username = Unique("d"), Email = "same@example.COM", PasswordHash = "x", RoleId = role.Id });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Theory]
    [InlineData("ab")]
    [InlineData("has space")]
    [InlineData("semi;colon")]
    [InlineData("ünicode")]
    public async Task Usernames_outside_the_allowed_shape_are_refused(string username)
    {
        await using var db = database.CreateDbContext();
        var (role, _, _) = await ArrangeWorkspaceAsync(db);
        db.Users.Add(new User { Username = username, PasswordHash = "x", RoleId = role.Id });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task A_username_over_64_characters_is_refused_by_the_column_type()
    {
        await using var db = database.CreateDbContext();
        var (role, _, _) = await ArrangeWorkspaceAsync(db);
        db.Users.Add(new User { Username = new string('a', 65), PasswordHash = "x", RoleId = role.Id });
        Assert.Equal(PostgresErrorCodes.StringDataRightTruncation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task Slugs_are_unique_even_against_soft_deleted_workspaces()
    {
        await using var db = database.CreateDbContext();
        var (_, user, workspace) = await ArrangeWorkspaceAsync(db);
        workspace.DeletedAt = DateTimeOffset.UtcNow;
        await db.SaveChangesAsync();
        Assert.False(await db.Workspaces.AnyAsync(w => w.Id == workspace.Id), "the query filter hides it");

        db.Workspaces.Add(new Workspace { Name = "Again", Slug = workspace.Slug, CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Theory]
    [InlineData("a")]
    [InlineData("Upper")]
    [InlineData("-leading")]
    [InlineData("trailing-")]
    [InlineData("under_score")]
    public async Task Slugs_outside_the_allowed_shape_are_refused(string slug)
    {
        await using var db = database.CreateDbContext();
        var (_, user, _) = await ArrangeWorkspaceAsync(db);
        db.Workspaces.Add(new Workspace { Name = "W", Slug = slug, CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task A_workspace_name_over_200_characters_or_blank_is_refused()
    {
        await using var db = database.CreateDbContext();
        var (_, user, _) = await ArrangeWorkspaceAsync(db);
        db.Workspaces.Add(new Workspace { Name = new string('n', 201), Slug = Unique("long-"), CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.StringDataRightTruncation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
        db.ChangeTracker.Clear();

        db.Workspaces.Add(new Workspace { Name = "   ", Slug = Unique("blank-"), CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task A_user_is_a_member_of_a_workspace_at_most_once()
    {
        await using var db = database.CreateDbContext();
        var (_, user, workspace) = await ArrangeWorkspaceAsync(db);
        db.WorkspaceMembers.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = user.Id, Role = WorkspaceRoles.Owner });
        await db.SaveChangesAsync();

        await using var connection = await database.OpenConnectionAsync();
        await using var duplicate = new NpgsqlCommand(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (@w, @u, 'Viewer')", connection);
        duplicate.Parameters.AddWithValue("w", workspace.Id);
        duplicate.Parameters.AddWithValue("u", user.Id);
        Assert.Equal(PostgresErrorCodes.UniqueViolation, await SqlStateOfAsync(() => duplicate.ExecuteNonQueryAsync()));
    }

    [Fact]
    public async Task Membership_roles_are_limited_to_the_four_workspace_roles()
    {
        await using var db = database.CreateDbContext();
        var (_, user, workspace) = await ArrangeWorkspaceAsync(db);
        db.WorkspaceMembers.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = user.Id, Role = "Superuser" });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task Procedure_names_are_unique_per_workspace_case_insensitively_but_free_across_workspaces()
    {
        await using var db = database.CreateDbContext();
        var (_, user, first) = await ArrangeWorkspaceAsync(db);
        var (_, _, second) = await ArrangeWorkspaceAsync(db);
        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = first.Id, Name = "dbo.GetOrders", CreatedBy = user.Id });
        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = second.Id, Name = "dbo.GetOrders", CreatedBy = user.Id });
        await db.SaveChangesAsync();

        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = first.Id, Name = "DBO.GETORDERS", CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Theory]
    [InlineData("1starts_with_digit")]
    [InlineData("has-dash")]
    [InlineData("a.b.c")]
    [InlineData("drop table x")]
    public async Task Procedure_names_outside_the_allowed_shape_are_refused(string name)
    {
        await using var db = database.CreateDbContext();
        var (_, user, workspace) = await ArrangeWorkspaceAsync(db);
        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = workspace.Id, Name = name, CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task Bad_status_values_are_refused()
    {
        await using var db = database.CreateDbContext();
        var (_, user, workspace) = await ArrangeWorkspaceAsync(db);
        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = workspace.Id, Name = "p1", Status = "archived", CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
        db.ChangeTracker.Clear();

        // Published without the published SQL is inconsistent.
        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = workspace.Id, Name = "p2", Status = "published", CreatedBy = user.Id });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
        db.ChangeTracker.Clear();

        db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id, Name = "dev", Provider = "oracle", Server = "local", DatabaseName = "x",
        });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
        db.ChangeTracker.Clear();

        db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id, Name = "dev", Provider = "postgres", Server = "local", DatabaseName = "x", Status = "sleeping",
        });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task Environment_names_are_unique_per_workspace()
    {
        await using var db = database.CreateDbContext();
        var (_, _, workspace) = await ArrangeWorkspaceAsync(db);
        db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id, Name = "dev", Provider = "postgres", Server = "local", DatabaseName = "a",
        });
        await db.SaveChangesAsync();
        db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id, Name = "dev", Provider = "postgres", Server = "local", DatabaseName = "b",
        });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }

    [Fact]
    public async Task Deleting_a_user_who_created_a_workspace_is_refused()
    {
        await using var db = database.CreateDbContext();
        var (_, user, _) = await ArrangeWorkspaceAsync(db);
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation,
            await SqlStateOfAsync(() => db.Users.Where(u => u.Id == user.Id).ExecuteDeleteAsync()));
    }

    [Fact]
    public async Task Deleting_a_workspace_cascades_to_members_procedures_environments_and_activity()
    {
        await using var db = database.CreateDbContext();
        var (_, user, workspace) = await ArrangeWorkspaceAsync(db);
        db.WorkspaceMembers.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = user.Id, Role = WorkspaceRoles.Owner });
        db.StoredProcedures.Add(new StoredProcedure { WorkspaceId = workspace.Id, Name = "p", CreatedBy = user.Id });
        db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id, Name = "dev", Provider = "postgres", Server = "local", DatabaseName = "d",
        });
        db.Activities.Add(new Activity { WorkspaceId = workspace.Id, UserId = user.Id, Action = "workspace.created", EntityType = "workspace" });
        await db.SaveChangesAsync();

        await db.Workspaces.IgnoreQueryFilters().Where(w => w.Id == workspace.Id).ExecuteDeleteAsync();

        Assert.Equal(0, await db.WorkspaceMembers.CountAsync(m => m.WorkspaceId == workspace.Id));
        Assert.Equal(0, await db.StoredProcedures.CountAsync(p => p.WorkspaceId == workspace.Id));
        Assert.Equal(0, await db.WorkspaceEnvironments.CountAsync(e => e.WorkspaceId == workspace.Id));
        Assert.Equal(0, await db.Activities.CountAsync(a => a.WorkspaceId == workspace.Id));
        Assert.True(await db.Users.AnyAsync(u => u.Id == user.Id), "the user stays");
    }

    [Fact]
    public async Task Activity_actions_and_entity_types_are_checked()
    {
        await using var db = database.CreateDbContext();
        db.Activities.Add(new Activity { Action = "Not An Action", EntityType = "workspace" });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
        db.ChangeTracker.Clear();
        db.Activities.Add(new Activity { Action = "thing.done", EntityType = "spaceship" });
        Assert.Equal(PostgresErrorCodes.CheckViolation, await SqlStateOfAsync(() => db.SaveChangesAsync()));
    }
}
