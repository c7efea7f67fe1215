using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class WorkspaceEnvironmentConfiguration : IEntityTypeConfiguration<WorkspaceEnvironment>
{
    public void Configure(EntityTypeBuilder<WorkspaceEnvironment> environment)
    {
        environment.ToTable("workspace_environments", t =>
        {
            t.HasCheckConstraint("ck_workspace_environments_name_format", "name ~ '^[a-z0-9][a-z0-9-]{0,62}$'");
            t.HasCheckConstraint("ck_workspace_environments_provider", Sql.InList("provider", WorkspaceProviders.All));
            t.HasCheckConstraint("ck_workspace_environments_status", Sql.InList("status", EnvironmentStatus.All));
            t.HasCheckConstraint("ck_workspace_environments_server_format", "server ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'");
            t.HasCheckConstraint("ck_workspace_environments_database_name_format", "database_name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'");
            t.HasCheckConstraint("ck_workspace_environments_schema_version_non_negative", "schema_version >= 0");
        });
        environment.HasKey(e => e.Id).HasName("pk_workspace_environments");
        environment.Property(e => e.Name).HasMaxLength(WorkspaceEnvironment.NameMaxLength);
        environment.Property(e => e.Provider).HasMaxLength(16);
        environment.Property(e => e.Server).HasMaxLength(WorkspaceEnvironment.ServerMaxLength);
        environment.Property(e => e.DatabaseName).HasMaxLength(WorkspaceEnvironment.DatabaseNameMaxLength);
        environment.Property(e => e.Status).HasMaxLength(16).HasDefaultValue(EnvironmentStatus.Pending);
        environment.Property(e => e.SchemaVersion).HasDefaultValue(0);
        environment.Property(e => e.IsProduction).HasDefaultValue(false);
        environment.Property(e => e.LastError).HasMaxLength(WorkspaceEnvironment.LastErrorMaxLength);

        environment.HasOne(e => e.Workspace).WithMany().HasForeignKey(e => e.WorkspaceId)
            .OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_workspace_environments_workspaces");
        environment.HasIndex(e => new { e.WorkspaceId, e.Name }).IsUnique()
            .HasDatabaseName("ux_workspace_environments_workspace_id_name");
    }
}
