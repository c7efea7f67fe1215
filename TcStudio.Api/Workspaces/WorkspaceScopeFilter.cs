using TcStudio.Api.Auth;

namespace TcStudio.Api.Workspaces;

/// <summary>Declares the permission an endpoint in the workspace scope needs.</summary>
public sealed record RequiresWorkspacePermission(WorkspacePermission Permission);

/// <summary>
/// Marks an endpoint that waits on a workspace database: <see cref="WorkspaceScopeFilter"/> then checks access but
/// opens no transaction around it (its handler saves with SaveChanges, one transaction per save).
/// </summary>
public sealed record WaitsOnWorkspaceDatabase;

/// <summary>
/// The one place where a workspace-scoped request starts its database work:
/// <list type="number">
/// <item>resolves {slug} and the caller's membership in one query; a non-member (or unknown slug) gets 404, so
/// existence does not leak; a member without the endpoint's permission gets 403;</item>
/// <item>runs the handler inside the execution strategy and, for writes, one transaction that commits only when
/// the handler succeeds; the row-level-security setting (tcstudio.workspace_id, <see cref="RequestRowSecurity"/>) is
/// applied from the access check on, next to the lock and statement timeouts of <see cref="RequestTransactionSettings"/>;</item>
/// <item>claims and records a POST's Idempotency-Key in that transaction (<see cref="IdempotentRequests"/>).</item>
/// </list>
/// Handlers never call BeginTransaction themselves. Endpoints marked <see cref="WaitsOnWorkspaceDatabase"/> get the
/// first step only (see there).
/// </summary>
public sealed class WorkspaceScopeFilter(TcStudioDbContext db, CurrentWorkspace current, IdempotentRequests idempotency, RequestRowSecurity rowSecurity)
    : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var permission = http.GetEndpoint()?.Metadata.GetMetadata<RequiresWorkspacePermission>()?.Permission
            ?? throw new InvalidOperationException($"{http.GetEndpoint()?.DisplayName} declares no workspace permission.");
        var slug = http.Request.RouteValues["slug"] as string ?? "";
        var isWrite = !HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method);

        if (!FieldErrors.Slug().IsMatch(slug)) return NotFound(slug);

        if (http.GetEndpoint()?.Metadata.GetMetadata<WaitsOnWorkspaceDatabase>() is not null)
        {
            // Endpoints that wait on a workspace database hold no system-database connection or transaction while
            // they wait (a hanging workspace must not drain the system pool), and are never re-run whole by the
            // retry strategy (executing a procedure twice is not a retry). Their handlers save with SaveChanges:
            // one transaction each.
            db.ChangeTracker.Clear();
            return await AuthorizeAsync(http, slug, permission)
                ?? await idempotency.RunAsync(http, inTransaction: false, () => next(context), http.RequestAborted);
        }

        var strategy = db.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async cancellationToken =>
        {
            db.ChangeTracker.Clear();
            await using var transaction = isWrite ? await db.Database.BeginTransactionAsync(cancellationToken) : null;

            if (await AuthorizeAsync(http, slug, permission) is { } refused) return refused;

            var result = await idempotency.RunAsync(http, inTransaction: transaction is not null, () => next(context), cancellationToken);
            if (transaction is not null)
            {
                if (IsSuccess(result)) await transaction.CommitAsync(cancellationToken);
                else await transaction.RollbackAsync(cancellationToken);
            }
            return result;
        }, http.RequestAborted);
    }

    /// <summary>Resolves the workspace and the caller's access; returns the 404/403 to answer, or null to go on.</summary>
    private async Task<ProblemHttpResult?> AuthorizeAsync(HttpContext http, string slug, WorkspacePermission permission)
    {
        var userId = http.User.UserId();
        var isSystemAdmin = http.User.IsSystemAdmin();
        var found = await FindAccess(db, slug, userId);
        if (found is null && isSystemAdmin && HttpMethods.IsDelete(http.Request.Method) && http.Request.Query["purge"] == "true")
        {
            // A system Admin may purge a workspace that is already soft-deleted.
            found = await FindAccessIncludingDeleted(db, slug, userId);
        }
        if (found is null || (found.MemberRole is null && !isSystemAdmin)) return NotFound(slug);

        current.Set(new WorkspaceAccess(found.Id, slug, userId, found.MemberRole, isSystemAdmin));
        // Row-level security: from the next statement on (in this transaction too), this workspace's rows only.
        rowSecurity.EnterWorkspace(found.Id);
        return current.Can(permission) ? null
            : Problems.Forbidden($"Your role in workspace '{slug}' ({found.MemberRole}) does not allow this.");
    }

    private static ProblemHttpResult NotFound(string slug) => Problems.NotFound($"Workspace '{slug}'");

    private static bool IsSuccess(object? result)
    {
        while (result is INestedHttpResult nested) result = nested.Result;
        return result is not IStatusCodeHttpResult { StatusCode: >= 400 };
    }

    private sealed record AccessRow(Guid Id, string? MemberRole);

    private static readonly Func<TcStudioDbContext, string, Guid, Task<AccessRow?>> FindAccess =
        EF.CompileAsyncQuery((TcStudioDbContext db, string slug, Guid userId) => db.Workspaces
            .Where(w => w.Slug == slug)
            .Select(w => new AccessRow(w.Id, w.Members.Where(m => m.UserId == userId).Select(m => m.Role).FirstOrDefault()))
            .FirstOrDefault());

    private static readonly Func<TcStudioDbContext, string, Guid, Task<AccessRow?>> FindAccessIncludingDeleted =
        EF.CompileAsyncQuery((TcStudioDbContext db, string slug, Guid userId) => db.Workspaces.IgnoreQueryFilters()
            .Where(w => w.Slug == slug)
            .Select(w => new AccessRow(w.Id, w.Members.Where(m => m.UserId == userId).Select(m => m.Role).FirstOrDefault()))
            .FirstOrDefault());
}

public static class WorkspaceScope
{
    /// <summary>/api/workspaces/{slug}/…: every endpoint in it runs through <see cref="WorkspaceScopeFilter"/>.</summary>
    public static RouteGroupBuilder MapWorkspaceScope(this RouteGroupBuilder api) =>
        api.MapGroup("/workspaces/{slug}").AddEndpointFilter<WorkspaceScopeFilter>().SupportsIdempotencyKeys();

    /// <summary>See <see cref="WaitsOnWorkspaceDatabase"/>.</summary>
    public static TBuilder WaitsOnWorkspaceDatabase<TBuilder>(this TBuilder endpoint) where TBuilder : IEndpointConventionBuilder =>
        endpoint.WithMetadata(new WaitsOnWorkspaceDatabase());

    public static TBuilder RequireWorkspacePermission<TBuilder>(this TBuilder endpoint, WorkspacePermission permission)
        where TBuilder : IEndpointConventionBuilder =>
        endpoint.WithMetadata(new RequiresWorkspacePermission(permission));
}
