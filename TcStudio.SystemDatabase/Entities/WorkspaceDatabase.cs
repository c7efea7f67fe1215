namespace TcStudio.SystemDatabase.Entities;

/// <summary>
/// TC Studio's claim on one database of one server: the row that makes a workspace database belong to its
/// workspace. Unique per (server identity, lower(database name)) whatever its state, so a database is never claimed
/// twice: inserting the row is the check. An attached row names its environment; a detached one (its environment
/// deleted, or its workspace purged, without dropping it) stays claimed and only a system Admin may adopt it again.
/// The workspace id is kept without a foreign key on purpose: the claim outlives a purged workspace, and the marker
/// inside the database still names it.
/// </summary>
public sealed class WorkspaceDatabase : IAuditedEntity
{
    public const int ServerIdentityMaxLength = 300;
    public const int RoleMaxLength = 63;

    public Guid Id { get; init; } = Guid.CreateVersion7();

    /// <summary>The normalised provider://host:port of the server's deploy connection (see WorkspaceServerIdentity).</summary>
    public required string ServerIdentity { get; set; }

    /// <summary>The server's configured name when the row was written (informative: identities decide).</summary>
    public required string Server { get; set; }

    public required string Provider { get; set; }
    public required string DatabaseName { get; set; }
    public Guid WorkspaceId { get; set; }
    public Guid? EnvironmentId { get; set; }
    public string State { get; set; } = WorkspaceDatabaseStates.Attached;

    /// <summary>created: TC Studio created it; adopted: a system Admin attached an existing database.</summary>
    public string Origin { get; set; } = WorkspaceDatabaseOrigins.Created;

    /// <summary>PostgreSQL: the environment's owner and execute roles (null on SQL Server).</summary>
    public string? OwnerRole { get; set; }
    public string? ExecuteRole { get; set; }

    /// <summary>The roles' passwords, AES-GCM encrypted with Workspaces:SecretKey (WorkspaceSecrets); null once detached.</summary>
    public byte[]? OwnerSecret { get; set; }
    public byte[]? ExecuteSecret { get; set; }

    public DateTimeOffset? DetachedAt { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

public static class WorkspaceDatabaseStates
{
    public const string Attached = "attached";
    public const string Detached = "detached";
    public static readonly string[] All = [Attached, Detached];
}

public static class WorkspaceDatabaseOrigins
{
    public const string Created = "created";
    public const string Adopted = "adopted";
    public static readonly string[] All = [Created, Adopted];
}
