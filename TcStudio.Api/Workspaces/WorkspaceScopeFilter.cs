using Microsoft.EntityFrameworkCore.Storage;
using TcStudio.Api.Auth;

namespace TcStudio.Api.Workspaces;

/// <summary>Declares the permission an endpoint in the workspace scope needs.</summary>
public sealed record RequiresWorkspacePermission(WorkspacePermission Permission);

/// <summary>
/// Where a workspace-scoped request enters its workspace, inside the request's unit of work
/// (<see cref="RequestUnitOfWork"/>, which owns the transaction): resolves {slug} and the caller's membership in one
/// query; a non-member (or unknown slug) gets 404, so existence does not leak; a member without the endpoint's
/// permission gets 403. From the access check on, the request's statements carry the workspace's row-level-security
/// setting (tcstudio.workspace_id, <see cref="RequestRowSecurity"/>).
/// </summary>
public sealed class WorkspaceScopeFilter(TcStudioDbContext db, CurrentWorkspace current, RequestRowSecurity rowSecurity) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var permission = http.GetEndpoint()?.Metadata.GetMetadata<RequiresWorkspacePermission>()?.Permission
            ?? throw new InvalidOperationException($"{http.GetEndpoint()?.DisplayName} declares no workspace permission.");
        var slug = http.Request.RouteValues["slug"] as string ?? "";
        if (!FieldErrors.Slug().IsMatch(slug)) return NotFound(slug);
        return await AuthorizeAsync(http, slug, permission) ?? await next(context);
    }

    /// <summary>Resolves the workspace and the caller's access; returns the 404/403 to answer, or null to go on.</summary>
    private async Task<ProblemHttpResult?> AuthorizeAsync(HttpContext http, string slug, WorkspacePermission permission)
    {
        var userId = http.User.UserId();
        var isSystemAdmin = http.User.IsSystemAdmin();
        var transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        var found = transaction is null ? await FindAccess(db, slug, userId, http.RequestAborted)
            : await FindAccessAndEnterAsync(db, slug, userId, isSystemAdmin, http.RequestAborted);
        if (found is null && isSystemAdmin && HttpMethods.IsDelete(http.Request.Method) && http.Request.Query["purge"] == "true")
        {
            // A system Admin may purge a workspace that is already soft-deleted.
            found = await FindAccessIncludingDeleted(db, slug, userId, http.RequestAborted);
        }
        if (found is null || (found.MemberRole is null && !isSystemAdmin)) return NotFound(slug);

        current.Set(new WorkspaceAccess(found.Id, slug, userId, found.MemberRole, isSystemAdmin));
        // Row-level security: from the next statement on (in this transaction too), this workspace's rows only.
        rowSecurity.EnterWorkspace(found.Id);
        if (transaction is not null && found.EnteredInTransaction) RequestTransactionSettingsInterceptor.RecordApplied(transaction);
        return current.Can(permission) ? null
            : Problems.Forbidden($"Your role in workspace '{slug}' ({found.MemberRole}) does not allow this.");
    }

    private static ProblemHttpResult NotFound(string slug) => Problems.NotFound($"Workspace '{slug}'");

    /// <param name="EnteredInTransaction">The batch also set this workspace's row-level-security setting in the request's transaction.</param>
    private sealed record AccessRow(Guid Id, string? MemberRole, bool EnteredInTransaction = false);

    // Every workspace route runs this first: a direct read (no EF query pipeline), the SQL EF wrote for it.
    private const string AccessSql = """
        SELECT w.id, (SELECT m.role FROM workspace_members AS m WHERE m.workspace_id = w.id AND m.user_id = $2 LIMIT 1)
        FROM workspaces AS w WHERE w.deleted_at IS NULL AND w.slug = $1 LIMIT 1
        """;

    private const string AccessIncludingDeletedSql = """
        SELECT w.id, (SELECT m.role FROM workspace_members AS m WHERE m.workspace_id = w.id AND m.user_id = $2 LIMIT 1)
        FROM workspaces AS w WHERE w.slug = $1 LIMIT 1
        """;

    private static Task<AccessRow?> FindAccess(TcStudioDbContext db, string slug, Guid userId, CancellationToken cancellationToken) =>
        ReadAccessAsync(db, AccessSql, slug, userId, cancellationToken);

    // In a write's transaction the same batch also enters the workspace, under the rule AuthorizeAsync applies (a
    // member, or a system Admin), so the write's first save needs no settings statement of its own: a create is then
    // three round trips (access, save, commit), not four. It answers the id it set; the request records the setting as
    // applied only when that is the workspace it resolved. A refused request (404, 403) is rolled back with it.
    private const string EnterWorkspaceSql = """
        SELECT set_config('tcstudio.workspace_id', COALESCE((
            SELECT w.id::text FROM workspaces AS w WHERE w.deleted_at IS NULL AND w.slug = $1
              AND ($3 OR EXISTS (SELECT 1 FROM workspace_members AS m WHERE m.workspace_id = w.id AND m.user_id = $2))), ''), true)
        """;

    private static async Task<AccessRow?> FindAccessAndEnterAsync(TcStudioDbContext db, string slug, Guid userId, bool isSystemAdmin,
        CancellationToken cancellationToken)
    {
        await using var read = await DirectRead.ExecuteAsync(db,
            [DirectRead.Command(AccessSql, slug, userId), DirectRead.Command(EnterWorkspaceSql, slug, userId, isSystemAdmin)], cancellationToken);
        var reader = read.Reader;
        if (!await reader.ReadAsync(cancellationToken)) return null;
        var found = ReadAccessRow(reader);
        await reader.NextResultAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return found with { EnteredInTransaction = reader.GetString(0) == found.Id.ToString("D") };
    }

    private static Task<AccessRow?> FindAccessIncludingDeleted(TcStudioDbContext db, string slug, Guid userId,
        CancellationToken cancellationToken) =>
        ReadAccessAsync(db, AccessIncludingDeletedSql, slug, userId, cancellationToken);

    private static async Task<AccessRow?> ReadAccessAsync(TcStudioDbContext db, string sql, string slug, Guid userId,
        CancellationToken cancellationToken)
    {
        await using var read = await DirectRead.ExecuteAsync(db, sql, cancellationToken, slug, userId);
        var reader = read.Reader;
        return await reader.ReadAsync(cancellationToken) ? ReadAccessRow(reader) : null;
    }

    private static AccessRow ReadAccessRow(Npgsql.NpgsqlDataReader reader) =>
        new(reader.GetGuid(0), reader.IsDBNull(1) ? null : reader.GetString(1));
}

public static class WorkspaceScope
{
    /// <summary>/api/workspaces/{slug}/…: every endpoint in it runs through <see cref="WorkspaceScopeFilter"/>.</summary>
    public static RouteGroupBuilder MapWorkspaceScope(this RouteGroupBuilder api) =>
        api.MapGroup("/workspaces/{slug}").AddEndpointFilter<WorkspaceScopeFilter>().SupportsIdempotencyKeys();

    public static TBuilder RequireWorkspacePermission<TBuilder>(this TBuilder endpoint, WorkspacePermission permission)
        where TBuilder : IEndpointConventionBuilder =>
        endpoint.WithMetadata(new RequiresWorkspacePermission(permission));
}
