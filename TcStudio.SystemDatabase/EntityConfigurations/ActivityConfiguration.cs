using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class ActivityConfiguration : IEntityTypeConfiguration<Activity>
{
    /// <summary>Shadow property for activities.xid (xid8).</summary>
    public const string TransactionIdProperty = "TransactionId";

    public void Configure(EntityTypeBuilder<Activity> activity)
    {
        activity.ToTable("activities", t =>
        {
            t.HasCheckConstraint("ck_activities_action_format", "action ~ '^[a-z][a-z_]*(\\.[a-z][a-z_]*)+$'");
            t.HasCheckConstraint("ck_activities_entity_type", Sql.InList("entity_type", EntityTypes.All));
            t.HasCheckConstraint("ck_activities_details_object", "details IS NULL OR jsonb_typeof(details) = 'object'");
        });
        activity.HasKey(a => a.Id).HasName("pk_activities");
        activity.Property(a => a.Action).HasMaxLength(Activity.ActionMaxLength);
        activity.Property(a => a.EntityType).HasMaxLength(32);
        activity.Property(a => a.Details).HasColumnType("jsonb");
        activity.Property(a => a.CreatedAt).HasDefaultValueSql("now()");
        // The inserting transaction's id: the live stream's commit-safe order (ActivityStreamDatabase). Always the
        // database's default, never sent by EF (nor by the bulk writer's COPY), and never read back.
        activity.Property<ulong>(TransactionIdProperty).HasColumnName("xid").HasColumnType("xid8")
            .HasDefaultValueSql("pg_current_xact_id()").ValueGeneratedNever()
            .Metadata.SetBeforeSaveBehavior(PropertySaveBehavior.Ignore);

        // A purge removes a workspace's whole history; a user's hard deletion (rare: the API soft-deletes) keeps
        // what they did, unattributed. No user_id index: workspace-scoped indexes lead with workspace_id.
        activity.HasOne<Workspace>().WithMany().HasForeignKey(a => a.WorkspaceId)
            .OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_activities_workspaces");
        activity.HasOne<User>().WithMany().HasForeignKey(a => a.UserId)
            .OnDelete(DeleteBehavior.SetNull).HasConstraintName("fk_activities_users");

        // Newest-first keyset paging per workspace; id breaks ties between rows of one instant.
        activity.HasIndex(a => new { a.WorkspaceId, a.CreatedAt, a.Id }).IsDescending(false, true, true)
            .HasDatabaseName("ix_activities_workspace_id_created_at");

        // The live stream reads a workspace's rows in (xid, id) order from a position on.
        activity.HasIndex(nameof(Activity.WorkspaceId), TransactionIdProperty, nameof(Activity.Id)).IsCreatedConcurrently()
            .HasDatabaseName("ix_activities_workspace_id_xid");
    }
}
