namespace TcStudio.SystemDatabase.Entities;

public sealed class User : IAuditedEntity, ISoftDeletable
{
    public const int UsernameMinLength = 3;
    public const int UsernameMaxLength = 64;
    public const int EmailMaxLength = 254;
    public const int DisplayNameMaxLength = 200;

    public Guid Id { get; init; } = Guid.CreateVersion7();
    public required string Username { get; set; }
    public string? Email { get; set; }
    public string? DisplayName { get; set; }
    public required string PasswordHash { get; set; }
    public Guid RoleId { get; set; }
    public Role? Role { get; set; }
    public bool IsActive { get; set; } = true;

    /// <summary>Changes whenever credentials or standing change; issued tokens carry it, so changing it revokes them.</summary>
    public Guid SecurityStamp { get; set; } = Guid.NewGuid();

    /// <summary>PostgreSQL's xmin: the row version behind ETags and optimistic concurrency.</summary>
    public uint Version { get; set; }

    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset? DeletedAt { get; set; }
}
