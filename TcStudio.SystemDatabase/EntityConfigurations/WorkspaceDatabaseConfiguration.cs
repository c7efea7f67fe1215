using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class WorkspaceDatabaseConfiguration : IEntityTypeConfiguration<WorkspaceDatabase>
{
    public void Configure(EntityTypeBuilder<WorkspaceDatabase> database)
    {
        database.ToTable("workspace_databases", t =>
        {
            t.HasCheckConstraint("ck_workspace_databases_state", Sql.InList("state", WorkspaceDatabaseStates.All));
            t.HasCheckConstraint("ck_workspace_databases_origin", Sql.InList("origin", WorkspaceDatabaseOrigins.All));
            t.HasCheckConstraint("ck_workspace_databases_provider", Sql.InList("provider", WorkspaceProviders.All));
            // Attached exactly when an environment is named: the database of a deleted environment must be detached
            // (or dropped) explicitly, never left pointing at nothing.
            t.HasCheckConstraint("ck_workspace_databases_attached_environment", "(state = 'attached') = (environment_id IS NOT NULL)");
            t.HasCheckConstraint("ck_workspace_databases_database_name_format", "database_name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'");
            t.HasCheckConstraint("ck_workspace_databases_role_format",
                "(owner_role IS NULL OR owner_role ~ '^tcws_[a-z0-9_]+_owner$') AND (execute_role IS NULL OR execute_role ~ "
                    + "'^tcws_[a-z0-9_]+_exec$')");
        });
        database.HasKey(d => d.Id).HasName("pk_workspace_databases");
        database.Property(d => d.ServerIdentity).HasMaxLength(WorkspaceDatabase.ServerIdentityMaxLength);
        database.Property(d => d.Server).HasMaxLength(WorkspaceEnvironment.ServerMaxLength);
        database.Property(d => d.Provider).HasMaxLength(16);
        database.Property(d => d.DatabaseName).HasMaxLength(WorkspaceEnvironment.DatabaseNameMaxLength);
        database.Property(d => d.State).HasMaxLength(16);
        database.Property(d => d.Origin).HasMaxLength(16);
        database.Property(d => d.OwnerRole).HasMaxLength(WorkspaceDatabase.RoleMaxLength);
        database.Property(d => d.ExecuteRole).HasMaxLength(WorkspaceDatabase.RoleMaxLength);

        // An environment cannot be deleted while its database is attached to it (detach or drop first).
        database.HasOne<WorkspaceEnvironment>().WithMany().HasForeignKey(d => d.EnvironmentId)
            .OnDelete(DeleteBehavior.Restrict).HasConstraintName("fk_workspace_databases_workspace_environments");

        // The claim itself, one row per database of a server whatever its state: the expression index
        // ux_workspace_databases_server_identity_database_name on (server_identity, lower(database_name)) is created
        // in the migration (PostgreSQL folds unquoted names, SQL Server compares them case-insensitively).
        database.HasIndex(d => d.EnvironmentId).IsUnique().HasDatabaseName("ux_workspace_databases_environment_id");
        database.HasIndex(d => d.WorkspaceId).HasDatabaseName("ix_workspace_databases_workspace_id");
    }
}
