using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class WorkspaceMemberConfiguration : IEntityTypeConfiguration<WorkspaceMember>
{
    public void Configure(EntityTypeBuilder<WorkspaceMember> member)
    {
        member.ToTable("workspace_members", t =>
            t.HasCheckConstraint("ck_workspace_members_role", Sql.InList("role", WorkspaceRoles.All)));
        // The key is the unique (workspace_id, user_id) pair: one membership per user per workspace.
        member.HasKey(m => new { m.WorkspaceId, m.UserId }).HasName("pk_workspace_members");
        member.Property(m => m.Role).HasMaxLength(16);
        member.Property(m => m.JoinedAt).HasDefaultValueSql("now()");

        member.HasOne(m => m.Workspace).WithMany(w => w.Members).HasForeignKey(m => m.WorkspaceId)
            .OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_workspace_members_workspaces");
        // A user's hard deletion takes their memberships with it (the trigger keeps member_count right).
        member.HasOne(m => m.User).WithMany().HasForeignKey(m => m.UserId)
            .OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_workspace_members_users");
        member.HasIndex(m => m.UserId).HasDatabaseName("ix_workspace_members_user_id");
    }
}
