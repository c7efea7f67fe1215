using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.Seeding;

/// <summary>
/// The idempotent seed: roles Admin and User, users admin and user, workspace TWSBP (slug twsbp) owned by admin with
/// user as a Member, and TWSBP's environment <c>dev</c> on the default workspace server (SQL Server <c>sql</c> when
/// ConnectionStrings:sql is set, else the local PostgreSQL) with database Seed:DevDatabaseName (twsbp_dev), left
/// pending: the worker's default run creates and migrates it. Creates only what is missing and never changes what
/// exists (ids, hashes, timestamps).
/// Callers hold <see cref="MigrationLock"/> so two workers never seed at once.
/// </summary>
public sealed class SystemSeeder(
    TcStudioDbContext db, IOptions<SeedOptions> seedOptions, IHostEnvironment environment,
    IDefaultWorkspaceServer? workspaceServers = null)
{
    public const string AdminUsername = "admin";
    public const string UserUsername = "user";
    public const string WorkspaceSlug = "twsbp";
    public const string WorkspaceName = "TWSBP";
    public const string DevEnvironment = "dev";

    /// <summary>Seeds what is missing and returns a line for each thing it created.</summary>
    public async Task<IReadOnlyList<string>> SeedAsync(CancellationToken cancellationToken = default)
    {
        var strategy = db.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async ct =>
        {
            db.ChangeTracker.Clear();
            var created = new List<string>();
            await using var transaction = await db.Database.BeginTransactionAsync(ct);

            var adminRole = await EnsureRoleAsync(Role.Admin, "Administers the whole system.", created, ct);
            var userRole = await EnsureRoleAsync(Role.User, "Works in the workspaces they belong to.", created, ct);

            var admin = await EnsureUserAsync(AdminUsername, "Administrator", adminRole,
                seedOptions.Value.AdminPassword, SeedOptions.DevelopmentAdminPassword, "Seed:AdminPassword", created, ct);
            var user = await EnsureUserAsync(UserUsername, "User", userRole,
                seedOptions.Value.UserPassword, SeedOptions.DevelopmentUserPassword, "Seed:UserPassword", created, ct);

            var workspace = await db.Workspaces.IgnoreQueryFilters().SingleOrDefaultAsync(w => w.Slug == WorkspaceSlug, ct);
            if (workspace is null)
            {
                workspace = new Workspace { Name = WorkspaceName, Slug = WorkspaceSlug, CreatedBy = admin.Id };
                db.Workspaces.Add(workspace);
                await db.SaveChangesAsync(ct);
                created.Add($"workspace {WorkspaceSlug}");
            }

            await EnsureMemberAsync(workspace, admin, WorkspaceRoles.Owner, created, ct);
            await EnsureMemberAsync(workspace, user, WorkspaceRoles.Member, created, ct);
            await EnsureDevEnvironmentAsync(workspace, created, ct);

            await transaction.CommitAsync(ct);
            return (IReadOnlyList<string>)created;
        }, cancellationToken);
    }

    private async Task<Role> EnsureRoleAsync(string name, string description, List<string> created, CancellationToken ct)
    {
        var role = await db.Roles.SingleOrDefaultAsync(r => r.Name == name, ct);
        if (role is not null) return role;
        role = new Role { Name = name, Description = description };
        db.Roles.Add(role);
        await db.SaveChangesAsync(ct);
        created.Add($"role {name}");
        return role;
    }

    private async Task<User> EnsureUserAsync(string username, string displayName, Role role, string? configuredPassword,
        string developmentPassword, string passwordKey, List<string> created, CancellationToken ct)
    {
        var user = await db.Users.IgnoreQueryFilters()
            .SingleOrDefaultAsync(u => u.Username.ToLower() == username, ct);
        if (user is not null) return user;

        var password = configuredPassword;
        if (password == developmentPassword && !environment.IsDevelopment())
        {
            // Documented in the README, so anyone can sign in with it: fine on a laptop, never on a shared system.
            throw new SeedRefusedException(
                $"Refusing to seed user '{username}' with the documented Development password in the "
                + $"{environment.EnvironmentName} environment: set {passwordKey} to a secret of your own.");
        }
        if (string.IsNullOrEmpty(password))
        {
            if (!environment.IsDevelopment())
            {
                throw new SeedRefusedException(
                    $"Refusing to seed user '{username}' without a password in the {environment.EnvironmentName} "
                    + $"environment: set {passwordKey} (environment variable {passwordKey.Replace(":", "__")}).");
            }
            password = developmentPassword;
        }

        user = new User
        {
            Username = username,
            DisplayName = displayName,
            PasswordHash = PasswordHashing.Hash(password),
            RoleId = role.Id,
        };
        db.Users.Add(user);
        await db.SaveChangesAsync(ct);
        created.Add($"user {username}");
        return user;
    }

    private async Task EnsureDevEnvironmentAsync(Workspace workspace, List<string> created, CancellationToken ct)
    {
        if (await db.WorkspaceEnvironments.AnyAsync(e => e.WorkspaceId == workspace.Id, ct)) return; // the workspace chose its own
        // Hosts without the workspace-database layer know no workspace server: the workspace stays without environments.
        if (workspaceServers?.DefaultServer is not { } server) return;
        var database = seedOptions.Value.DevDatabaseName ?? SeedOptions.DefaultDevDatabaseName;
        db.WorkspaceEnvironments.Add(new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id,
            Name = DevEnvironment,
            Provider = server.Provider,
            Server = server.Name,
            DatabaseName = database,
        });
        await db.SaveChangesAsync(ct);
        created.Add($"environment {workspace.Slug}/{DevEnvironment} on server {server.Name} (database {database})");
    }

    private async Task EnsureMemberAsync(Workspace workspace, User user, string role, List<string> created, CancellationToken ct)
    {
        if (await db.WorkspaceMembers.AnyAsync(m => m.WorkspaceId == workspace.Id && m.UserId == user.Id, ct)) return;
        db.WorkspaceMembers.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = user.Id, Role = role });
        await db.SaveChangesAsync(ct);
        created.Add($"membership {user.Username} as {role} of {workspace.Slug}");
    }
}

/// <summary>Seeding cannot proceed as configured; the message says what to set.</summary>
public sealed class SeedRefusedException(string message) : Exception(message);

/// <summary>
/// The workspace server a seeded workspace's <c>dev</c> environment goes to (SQL Server <c>sql</c> when configured, else
/// the local PostgreSQL): the workspace-database layer knows the registered servers and provides this.
/// </summary>
public interface IDefaultWorkspaceServer
{
    /// <summary>The default server's name and provider ('sqlserver' or 'postgres'), or null when none is registered.</summary>
    (string Name, string Provider)? DefaultServer { get; }
}
