namespace TcStudio.Api.Workspaces;

/// <summary>
/// The workspace a request under /api/workspaces/{slug} works in, and what the caller may do there. Filled by
/// <see cref="WorkspaceScopeFilter"/> before the handler runs; handlers take it as a parameter.
/// </summary>
public sealed class CurrentWorkspace
{
    private WorkspaceAccess? _access;

    public WorkspaceAccess Access => _access ?? throw new InvalidOperationException(
        "CurrentWorkspace is only available to endpoints in the workspace scope (MapWorkspaceScope).");

    public Guid Id => Access.WorkspaceId;
    public string Slug => Access.Slug;
    public Guid UserId => Access.UserId;

    public bool Can(WorkspacePermission permission) =>
        WorkspacePermissions.Allows(Access.MemberRole, Access.IsSystemAdmin, permission);

    internal void Set(WorkspaceAccess access) => _access = access;
}

/// <param name="MemberRole">The caller's role in the workspace; null for a system Admin who is not a member.</param>
public sealed record WorkspaceAccess(Guid WorkspaceId, string Slug, Guid UserId, string? MemberRole, bool IsSystemAdmin);
