using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class StoredProcedureConfiguration : IEntityTypeConfiguration<StoredProcedure>
{
    /// <summary>Optional schema prefix, then an identifier; the column type caps the whole at 128.</summary>
    public const string NamePattern = "^([A-Za-z_][A-Za-z0-9_]*\\.)?[A-Za-z_][A-Za-z0-9_]*$";

    public void Configure(EntityTypeBuilder<StoredProcedure> procedure)
    {
        procedure.ToTable("stored_procedures", t =>
        {
            t.HasCheckConstraint("ck_stored_procedures_name_format", $"name ~ '{NamePattern}'");
            t.HasCheckConstraint("ck_stored_procedures_status", Sql.InList("status", ProcedureStatus.All));
            t.HasCheckConstraint("ck_stored_procedures_published_has_sql",
                "status <> 'published' OR (sql_published IS NOT NULL AND published_at IS NOT NULL)");
        });
        procedure.HasKey(p => p.Id).HasName("pk_stored_procedures");
        procedure.Property(p => p.Name).HasMaxLength(StoredProcedure.NameMaxLength);
        procedure.Property(p => p.Status).HasMaxLength(16).HasDefaultValue(ProcedureStatus.Draft);
        procedure.Property(p => p.SqlDraft).HasDefaultValue("");
        procedure.Property(p => p.Version).IsRowVersion();
        procedure.Property(p => p.PublishedChecksum).HasMaxLength(128);

        procedure.HasOne(p => p.Workspace).WithMany().HasForeignKey(p => p.WorkspaceId)
            .OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_stored_procedures_workspaces");
        procedure.HasOne<User>().WithMany().HasForeignKey(p => p.CreatedBy)
            .OnDelete(DeleteBehavior.Restrict).HasConstraintName("fk_stored_procedures_users");

        // (workspace_id, updated_at) serves every per-workspace query, so workspace_id needs no index of its own.
        // Case-insensitive uniqueness (ux_stored_procedures_workspace_id_name on (workspace_id, lower(name)))
        // is an expression index created in the migration.
        procedure.HasIndex(p => new { p.WorkspaceId, p.UpdatedAt })
            .HasDatabaseName("ix_stored_procedures_workspace_id_updated_at");

        // 'simple' keeps identifiers as written (no English stemming of procedure or column names).
        procedure.HasGeneratedTsVectorColumn(p => p.SearchVector!, "simple", p => new { p.Name, p.SqlDraft });
        // Searches always run inside one workspace: a GIN index led by workspace_id (btree_gin) finds a workspace's
        // matches without collecting every workspace's first, so search time does not grow with the whole table.
        procedure.HasIndex(p => new { p.WorkspaceId, p.SearchVector }).HasMethod("gin").IsCreatedConcurrently()
            .HasDatabaseName("ix_stored_procedures_workspace_id_search_vector");
    }
}
