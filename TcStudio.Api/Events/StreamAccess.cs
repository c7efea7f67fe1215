using System.Security.Claims;
using TcStudio.Api.Auth;
using TcStudio.Api.Workspaces;

namespace TcStudio.Api.Events;

/// <summary>
/// Whether the caller of an open stream may still read its workspace: the same rule as at connect
/// (<see cref="WorkspaceScopeFilter"/>, permission Read), asked again while the stream lives. The token must still
/// stand (<see cref="UserSessions"/>: not revoked by a password change, deactivation or deletion; the role refreshed),
/// and the workspace must exist (not soft-deleted or purged) with the caller a member, or a system Admin.
/// Each check is one short query on a pooled connection, returned at once.
/// </summary>
public sealed class StreamAccess(UserSessions sessions, IServiceScopeFactory scopes)
{
    public async Task<bool> StillAllowedAsync(ClaimsPrincipal user, Guid workspaceId, CancellationToken cancellationToken)
    {
        if (!await sessions.ValidateAsync(user, cancellationToken)) return false;

        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
        var workspace = await FindMembership(db, workspaceId, user.UserId());
        return workspace is not null && WorkspacePermissions.Allows(workspace.MemberRole, user.IsSystemAdmin(), WorkspacePermission.Read);
    }

    private sealed record MembershipRow(string? MemberRole);

    // The query filter hides soft-deleted workspaces: a deleted workspace answers null.
    private static readonly Func<TcStudioDbContext, Guid, Guid, Task<MembershipRow?>> FindMembership =
        EF.CompileAsyncQuery((TcStudioDbContext db, Guid workspaceId, Guid userId) => db.Workspaces
            .Where(w => w.Id == workspaceId)
            .Select(w => new MembershipRow(w.Members.Where(m => m.UserId == userId).Select(m => m.Role).FirstOrDefault()))
            .FirstOrDefault());
}
