using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Conventions;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase;

/// <summary>The system database: users, roles, workspaces, memberships, environments, procedures, activity.</summary>
public sealed class TcStudioDbContext(DbContextOptions<TcStudioDbContext> options) : DbContext(options)
{
    /// <summary>EF's history table, renamed as the design asks.</summary>
    public const string MigrationsHistoryTable = "migrations";

    public DbSet<Role> Roles => Set<Role>();
    public DbSet<User> Users => Set<User>();
    public DbSet<Workspace> Workspaces => Set<Workspace>();
    public DbSet<WorkspaceMember> WorkspaceMembers => Set<WorkspaceMember>();
    public DbSet<WorkspaceEnvironment> WorkspaceEnvironments => Set<WorkspaceEnvironment>();
    public DbSet<WorkspaceDatabase> WorkspaceDatabases => Set<WorkspaceDatabase>();
    public DbSet<StoredProcedure> StoredProcedures => Set<StoredProcedure>();
    public DbSet<Activity> Activities => Set<Activity>();
    public DbSet<DatabaseSizeSample> DatabaseSizeSamples => Set<DatabaseSizeSample>();
    public DbSet<IdempotencyKey> IdempotencyKeys => Set<IdempotencyKey>();
    public DbSet<LoginFailure> LoginFailures => Set<LoginFailure>();

    /// <summary>
    /// Every index is declared on purpose: workspace-scoped tables lead their indexes with workspace_id, and a
    /// foreign key gets its own index only where a lookup needs one (EF would otherwise add one per key).
    /// </summary>
    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder) =>
        configurationBuilder.Conventions.Remove<ForeignKeyIndexConvention>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        // B-tree operator classes for GIN, so a full-text index can lead with workspace_id. A trusted extension:
        // the database owner may create it without superuser rights.
        modelBuilder.HasPostgresExtension("btree_gin");
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(TcStudioDbContext).Assembly);
    }
}
