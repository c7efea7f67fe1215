using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class WorkspaceConfiguration : IEntityTypeConfiguration<Workspace>
{
    public void Configure(EntityTypeBuilder<Workspace> workspace)
    {
        workspace.ToTable("workspaces", t =>
        {
            t.HasCheckConstraint("ck_workspaces_slug_format", "slug ~ '^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$'");
            t.HasCheckConstraint("ck_workspaces_name_not_blank", "length(btrim(name)) > 0");
            t.HasCheckConstraint("ck_workspaces_member_count_non_negative", "member_count >= 0");
            t.HasCheckConstraint("ck_workspaces_settings_object", "jsonb_typeof(settings) = 'object'");
        });
        workspace.HasKey(w => w.Id).HasName("pk_workspaces");
        workspace.Property(w => w.Name).HasMaxLength(Workspace.NameMaxLength);
        workspace.Property(w => w.Slug).HasMaxLength(Workspace.SlugMaxLength);
        workspace.Property(w => w.Description).HasMaxLength(Workspace.DescriptionMaxLength);
        workspace.Property(w => w.Settings).HasColumnType("jsonb").HasDefaultValueSql("'{}'::jsonb");
        workspace.Property(w => w.Version).IsRowVersion();

        // member_count belongs to the database trigger on workspace_members: EF reads it, never writes it.
        var memberCount = workspace.Property(w => w.MemberCount).HasDefaultValue(0).ValueGeneratedOnAddOrUpdate();
        memberCount.Metadata.SetBeforeSaveBehavior(PropertySaveBehavior.Ignore);
        memberCount.Metadata.SetAfterSaveBehavior(PropertySaveBehavior.Ignore);

        workspace.HasIndex(w => w.Slug).IsUnique().HasDatabaseName("ux_workspaces_slug");
        workspace.HasOne<User>().WithMany().HasForeignKey(w => w.CreatedBy)
            .OnDelete(DeleteBehavior.Restrict).HasConstraintName("fk_workspaces_users");
        workspace.HasIndex(w => w.CreatedBy).HasDatabaseName("ix_workspaces_created_by");

        workspace.HasQueryFilter(w => w.DeletedAt == null);
    }
}
