namespace TcStudio.Api.Workspaces;

/// <summary>What a caller may do inside one workspace.</summary>
public enum WorkspacePermission
{
    Read,
    EditDrafts,
    ExecuteNonProduction,
    ExecuteProduction,
    Publish,
    ManageMembers,
    ManageEnvironments,
    UpdateWorkspace,
    DeleteWorkspace,
}

/// <summary>
/// The one table that says which workspace role may do what. Viewer reads; Member also edits drafts and executes
/// outside production; Admin also publishes, executes anywhere, manages members and environments and edits the
/// workspace; Owner also deletes it. The system Admin role may do everything everywhere.
/// </summary>
public static class WorkspacePermissions
{
    private static readonly WorkspacePermission[] Viewer = [WorkspacePermission.Read];

    private static readonly WorkspacePermission[] Member =
        [.. Viewer, WorkspacePermission.EditDrafts, WorkspacePermission.ExecuteNonProduction];

    private static readonly WorkspacePermission[] Admin =
    [
        .. Member, WorkspacePermission.ExecuteProduction, WorkspacePermission.Publish, WorkspacePermission.ManageMembers,
        WorkspacePermission.ManageEnvironments, WorkspacePermission.UpdateWorkspace,
    ];

    private static readonly WorkspacePermission[] Owner = [.. Admin, WorkspacePermission.DeleteWorkspace];

    public static readonly IReadOnlyDictionary<string, IReadOnlySet<WorkspacePermission>> ByRole =
        new Dictionary<string, IReadOnlySet<WorkspacePermission>>
        {
            [WorkspaceRoles.Viewer] = Viewer.ToHashSet(),
            [WorkspaceRoles.Member] = Member.ToHashSet(),
            [WorkspaceRoles.Admin] = Admin.ToHashSet(),
            [WorkspaceRoles.Owner] = Owner.ToHashSet(),
        };

    public static bool Allows(string? workspaceRole, bool isSystemAdmin, WorkspacePermission permission) =>
        isSystemAdmin || (workspaceRole is not null && ByRole.TryGetValue(workspaceRole, out var granted) && granted.Contains(permission));

    /// <summary>Production is an attribute of the environment (isProduction), never guessed from its name.</summary>
    public static WorkspacePermission ExecutePermissionFor(TcStudio.SystemDatabase.Entities.WorkspaceEnvironment environment) =>
        environment.IsProduction ? WorkspacePermission.ExecuteProduction : WorkspacePermission.ExecuteNonProduction;
}
