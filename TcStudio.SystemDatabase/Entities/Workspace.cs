using System.Text.Json;

namespace TcStudio.SystemDatabase.Entities;

public sealed class Workspace : IAuditedEntity, ISoftDeletable
{
    public const int NameMaxLength = 200;
    public const int SlugMinLength = 2;
    public const int SlugMaxLength = 63;
    public const int DescriptionMaxLength = 2000;

    public Guid Id { get; init; } = Guid.CreateVersion7();
    public required string Name { get; set; }
    public required string Slug { get; set; }
    public string? Description { get; set; }
    public JsonDocument Settings { get; set; } = JsonDocument.Parse("{}");

    /// <summary>Maintained by a trigger on workspace_members; EF never writes it.</summary>
    public int MemberCount { get; private set; }

    public Guid CreatedBy { get; set; }
    public uint Version { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset? DeletedAt { get; set; }

    public List<WorkspaceMember> Members { get; } = [];
}
