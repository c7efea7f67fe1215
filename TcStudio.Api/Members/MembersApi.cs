using TcStudio.Api.Activities;
using TcStudio.Api.Workspaces;

namespace TcStudio.Api.Members;

public sealed record MemberResponse(string Username, string? DisplayName, string Role, DateTimeOffset JoinedAt);

public sealed record SetMemberRequest(string Role);

public static class MembersApi
{
    public static RouteGroupBuilder MapMembersApi(this RouteGroupBuilder api)
    {
        var members = api.MapWorkspaceScope().MapGroup("/members").WithTags("Members");
        members.MapGet("/", ListMembers).RequireWorkspacePermission(WorkspacePermission.Read)
            .WithSummary("The workspace's members.");
        members.MapGet("/{username}", GetMember).RequireWorkspacePermission(WorkspacePermission.Read)
            .WithSummary("One member of the workspace.");
        members.MapPut("/{username}", SetMember).RequireWorkspacePermission(WorkspacePermission.ManageMembers)
            .WithSummary("Add a user to the workspace (201) or change their role (200). Only an Owner or a system Admin grants or takes away Owner.");
        members.MapDelete("/{username}", RemoveMember).RequireWorkspacePermission(WorkspacePermission.ManageMembers)
            .WithSummary("Remove a member. The last Owner cannot be removed.");
        return api;
    }

    public static async Task<Results<Ok<PagedList<MemberResponse>>, ValidationProblem>> ListMembers(
        [AsParameters] PageRequest paging, CurrentWorkspace workspace, TcStudioDbContext db, HttpRequest request, CancellationToken cancellationToken)
    {
        if (paging.Validate() is { Any: true } errors) return errors.ToProblem();

        var members = db.WorkspaceMembers.AsNoTracking().Where(m => m.WorkspaceId == workspace.Id);
        var total = await members.CountAsync(cancellationToken);
        var items = await members.OrderBy(m => m.User!.Username).ThenBy(m => m.UserId).Skip(paging.Skip).Take(paging.Size)
            .Select(m => new MemberResponse(m.User!.Username, m.User.DisplayName, m.Role, m.JoinedAt))
            .ToListAsync(cancellationToken);
        return TypedResults.Ok(paging.ToPage(items, total, request));
    }

    public static async Task<Results<Ok<MemberResponse>, ValidationProblem, ProblemHttpResult>> GetMember(
        string username, CurrentWorkspace workspace, TcStudioDbContext db, CancellationToken cancellationToken)
    {
        if (ValidateUsername(username) is { Any: true } errors) return errors.ToProblem();

        var lower = username.ToLowerInvariant();
        var member = await db.WorkspaceMembers.AsNoTracking()
            .Where(m => m.WorkspaceId == workspace.Id && m.User!.Username.ToLower() == lower)
            .Select(m => new MemberResponse(m.User!.Username, m.User.DisplayName, m.Role, m.JoinedAt))
            .SingleOrDefaultAsync(cancellationToken);
        return member is null ? MemberNotFound(username, workspace) : TypedResults.Ok(member);
    }

    public static async Task<Results<Created<MemberResponse>, Ok<MemberResponse>, ValidationProblem, ProblemHttpResult>> SetMember(
        string username, SetMemberRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var errors = ValidateUsername(username).OneOf("role", request.Role, WorkspaceRoles.All);
        if (errors.Any) return errors.ToProblem();

        var cancellationToken = http.RequestAborted;
        await LockWorkspaceAsync(db, workspace.Id, cancellationToken);
        var user = await FindUserAsync(db, username, cancellationToken);
        if (user is null) return Problems.NotFound($"User '{username}'");

        var membership = await db.WorkspaceMembers
            .SingleOrDefaultAsync(m => m.WorkspaceId == workspace.Id && m.UserId == user.Id, cancellationToken);
        var location = $"/api/workspaces/{workspace.Slug}/members/{user.Username}";

        if (membership is null)
        {
            if (request.Role == WorkspaceRoles.Owner && !MayManageOwners(workspace)) return OwnersOnly(workspace);
            membership = new WorkspaceMember { WorkspaceId = workspace.Id, UserId = user.Id, Role = request.Role };
            db.WorkspaceMembers.Add(membership);
            db.AddActivity(workspace.Id, workspace.UserId, "member.added", EntityTypes.Member, user.Id,
                new { user.Username, request.Role });
            await db.SaveChangesAsync(cancellationToken);
            return TypedResults.Created(location, new MemberResponse(user.Username, user.DisplayName, membership.Role, membership.JoinedAt));
        }

        var previous = membership.Role;
        if (previous != request.Role)
        {
            if ((previous == WorkspaceRoles.Owner || request.Role == WorkspaceRoles.Owner) && !MayManageOwners(workspace))
            {
                return OwnersOnly(workspace);
            }
            if (previous == WorkspaceRoles.Owner && await CountOwnersAsync(db, workspace.Id, cancellationToken) == 1)
            {
                return LastOwner(workspace, "role");
            }
            membership.Role = request.Role;
            db.AddActivity(workspace.Id, workspace.UserId, "member.role_changed", EntityTypes.Member, user.Id,
                new { user.Username, from = previous, to = request.Role });
            await db.SaveChangesAsync(cancellationToken);
        }
        return TypedResults.Ok(new MemberResponse(user.Username, user.DisplayName, membership.Role, membership.JoinedAt));
    }

    public static async Task<Results<NoContent, ValidationProblem, ProblemHttpResult>> RemoveMember(
        string username, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        if (ValidateUsername(username) is { Any: true } errors) return errors.ToProblem();

        var cancellationToken = http.RequestAborted;
        await LockWorkspaceAsync(db, workspace.Id, cancellationToken);
        var user = await FindUserAsync(db, username, cancellationToken);
        if (user is null) return Problems.NotFound($"User '{username}'");
        var membership = await db.WorkspaceMembers
            .SingleOrDefaultAsync(m => m.WorkspaceId == workspace.Id && m.UserId == user.Id, cancellationToken);
        if (membership is null) return MemberNotFound(username, workspace);

        if (membership.Role == WorkspaceRoles.Owner)
        {
            if (!MayManageOwners(workspace)) return OwnersOnly(workspace);
            if (await CountOwnersAsync(db, workspace.Id, cancellationToken) == 1) return LastOwner(workspace, "username");
        }

        db.WorkspaceMembers.Remove(membership); // the trigger keeps member_count right
        db.AddActivity(workspace.Id, workspace.UserId, "member.removed", EntityTypes.Member, user.Id,
            new { user.Username, membership.Role });
        await db.SaveChangesAsync(cancellationToken);
        return TypedResults.NoContent();
    }

    private static FieldErrors ValidateUsername(string username) =>
        new FieldErrors().Pattern("username", username, FieldErrors.Username(), "3–64 letters, digits, '.', '_' or '-'");

    /// <summary>Granting or taking away Owner is for Owners (and the system Admin), not for workspace Admins.</summary>
    private static bool MayManageOwners(CurrentWorkspace workspace) =>
        workspace.Access.IsSystemAdmin || workspace.Access.MemberRole == WorkspaceRoles.Owner;

    /// <summary>
    /// Serialises membership changes per workspace for the rest of the request's transaction, so two requests cannot
    /// each remove "the other" last Owner. NO KEY UPDATE leaves inserts that reference the workspace (activities)
    /// unblocked.
    /// </summary>
    private static Task LockWorkspaceAsync(TcStudioDbContext db, Guid workspaceId, CancellationToken cancellationToken)
    {
        RequestUnitOfWork.RequireTransaction(db.Database, "The last-Owner check");
        return db.Database.ExecuteSqlAsync($"SELECT 1 FROM workspaces WHERE id = {workspaceId} FOR NO KEY UPDATE", cancellationToken);
    }

    private static Task<int> CountOwnersAsync(TcStudioDbContext db, Guid workspaceId, CancellationToken cancellationToken) =>
        db.WorkspaceMembers.CountAsync(m => m.WorkspaceId == workspaceId && m.Role == WorkspaceRoles.Owner, cancellationToken);

    private sealed record UserRow(Guid Id, string Username, string? DisplayName);

    private static Task<UserRow?> FindUserAsync(TcStudioDbContext db, string username, CancellationToken cancellationToken)
    {
        var lower = username.ToLowerInvariant();
        return db.Users.AsNoTracking().Where(u => u.Username.ToLower() == lower)
            .Select(u => new UserRow(u.Id, u.Username, u.DisplayName)).SingleOrDefaultAsync(cancellationToken);
    }

    private static ProblemHttpResult MemberNotFound(string username, CurrentWorkspace workspace) =>
        Problems.NotFound($"Member '{username}' of workspace '{workspace.Slug}'");

    private static ProblemHttpResult OwnersOnly(CurrentWorkspace workspace) =>
        Problems.Forbidden($"Only an Owner of workspace '{workspace.Slug}' (or a system Admin) may grant or take away the Owner role.");

    private static ProblemHttpResult LastOwner(CurrentWorkspace workspace, string field) =>
        Problems.Conflict($"This is the last Owner of workspace '{workspace.Slug}'; make someone else an Owner first.", field,
            ErrorCodes.MemberLastOwner);
}
