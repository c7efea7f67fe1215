using System.Text.Json;

namespace TcStudio.SystemDatabase.Entities;

/// <summary>One line of the audit trail. Append-only: nothing updates or deletes these rows except a workspace purge.</summary>
public sealed class Activity : IHasCreatedAt
{
    public const int ActionMaxLength = 64;

    public Guid Id { get; init; } = Guid.CreateVersion7();
    public Guid? WorkspaceId { get; set; }
    public Guid? UserId { get; set; }
    public required string Action { get; set; }
    public required string EntityType { get; set; }
    public Guid? EntityId { get; set; }
    public JsonDocument? Details { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

public static class EntityTypes
{
    public const string User = "user";
    public const string Role = "role";
    public const string Workspace = "workspace";
    public const string Member = "member";
    public const string Environment = "environment";
    public const string Procedure = "procedure";
    public const string System = "system";
    public static readonly string[] All = [User, Role, Workspace, Member, Environment, Procedure, System];
}
