namespace TcStudio.SystemDatabase.Entities;

public sealed class WorkspaceMember : IHasCreatedAt
{
    public Guid WorkspaceId { get; set; }
    public Guid UserId { get; set; }
    public required string Role { get; set; }
    public DateTimeOffset JoinedAt { get; set; }

    DateTimeOffset IHasCreatedAt.CreatedAt { get => JoinedAt; set => JoinedAt = value; }

    public Workspace? Workspace { get; set; }
    public User? User { get; set; }
}

/// <summary>Roles inside one workspace, most powerful first.</summary>
public static class WorkspaceRoles
{
    public const string Owner = "Owner";
    public const string Admin = "Admin";
    public const string Member = "Member";
    public const string Viewer = "Viewer";
    public static readonly string[] All = [Owner, Admin, Member, Viewer];
}
