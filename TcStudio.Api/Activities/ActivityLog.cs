using System.Text.Json;

namespace TcStudio.Api.Activities;

/// <summary>
/// Appends audit rows through the same DbContext as the change they describe, so both are saved by one SaveChanges
/// (one transaction): there is never a change without its activity, nor an activity for a change that failed.
/// </summary>
public static class ActivityLog
{
    public static void AddActivity(this TcStudioDbContext db, Guid? workspaceId, Guid? userId, string action,
        string entityType, Guid? entityId, object? details = null) =>
        db.Activities.Add(new Activity
        {
            WorkspaceId = workspaceId,
            UserId = userId,
            Action = action,
            EntityType = entityType,
            EntityId = entityId,
            Details = details is null ? null : JsonSerializer.SerializeToDocument(details, DetailsJson),
        });

    private static readonly JsonSerializerOptions DetailsJson = new(JsonSerializerDefaults.Web);
}
