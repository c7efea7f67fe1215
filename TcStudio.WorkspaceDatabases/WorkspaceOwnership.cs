namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// An environment's claim on its database, as read from the system database (workspace_databases), with its roles'
/// passwords decrypted: what a connection to it needs and what its marker must say.
/// </summary>
public sealed record WorkspaceOwnership(Guid DatabaseId, Guid WorkspaceId, Guid EnvironmentId, string ServerIdentity, string Database,
    WorkspaceRoleSet? Roles)
{
    public WorkspaceMarker Marker => new(WorkspaceId, EnvironmentId, DatabaseId);
}

/// <summary>A PostgreSQL environment's two roles and their passwords. Never printed with its passwords.</summary>
public sealed class WorkspaceRoleSet(string ownerRole, string ownerPassword, string executeRole, string executePassword)
{
    public string OwnerRole { get; } = ownerRole;
    public string OwnerPassword { get; } = ownerPassword;
    public string ExecuteRole { get; } = executeRole;
    public string ExecutePassword { get; } = executePassword;

    public IEnumerable<string> Names => [OwnerRole, ExecuteRole];

    public override string ToString() => $"{OwnerRole}, {ExecuteRole}";
}

/// <summary>
/// What each workspace database says about itself, in <c>tcstudio_ownership.marker</c>: written when TC Studio
/// provisions, adopts or converts it, read before every connection is used and before it is dropped.
/// </summary>
public sealed record WorkspaceMarker(Guid WorkspaceId, Guid EnvironmentId, Guid DatabaseId)
{
    public const string Schema = "tcstudio_ownership";

    public bool Names(WorkspaceOwnership ownership) => WorkspaceId == ownership.WorkspaceId && EnvironmentId == ownership.EnvironmentId;

    /// <summary>Throws <see cref="WorkspaceOwnershipException"/> (naming both sides) unless the marker names this environment.</summary>
    public static void Verify(WorkspaceMarker? found, WorkspaceOwnership expected, WorkspaceTarget target)
    {
        if (found is not null && found.Names(expected)) return;
        var ours = $"environment '{target}' (workspace {expected.WorkspaceId}, environment {expected.EnvironmentId})";
        throw new WorkspaceOwnershipException(found is null
            ? $"Database '{target.Database}' on server '{target.Server}' has no TC Studio marker, so it is not the database of {ours}; "
                + "TC Studio will not use it."
            : $"Database '{target.Database}' on server '{target.Server}' is marked as the database of workspace {found.WorkspaceId}, "
                + $"environment {found.EnvironmentId}, "
              + $"not of {ours}; TC Studio will not use it.",
            target.Environment);
    }
}

/// <summary>Resolves an environment's claim (roles, passwords, identity) for the connection cache.</summary>
public interface IWorkspaceOwnershipSource
{
    /// <summary>The attached claim of the target's environment; throws <see cref="WorkspaceOwnershipException"/> when it has none.</summary>
    Task<WorkspaceOwnership> FindAsync(WorkspaceTarget target, WorkspaceServer server, CancellationToken cancellationToken);
}
