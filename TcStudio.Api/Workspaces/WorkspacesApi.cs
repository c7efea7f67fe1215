using System.Text.Json;
using Microsoft.Extensions.Options;
using TcStudio.Api.Activities;
using TcStudio.Api.Auth;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Api.Workspaces;

public sealed record WorkspaceSummary(Guid Id, string Name, string Slug, string? Description, int MemberCount,
    string? Role, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt)
{
    /// <summary>The workspace's ETag (as GET /api/workspaces/{slug} sends it), for If-Match on a later write.</summary>
    [System.Text.Json.Serialization.JsonPropertyName("etag")]
    public string? ETag { get; init; }
}

public sealed record WorkspaceDetails(Guid Id, string Name, string Slug, string? Description, JsonElement Settings,
    int MemberCount, string? Role, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

public sealed record CreateWorkspaceRequest(string Name, string Slug, string? Description = null);

/// <summary>PATCH: absent (or null) fields stay as they are; an empty description clears it.</summary>
public sealed record UpdateWorkspaceRequest(string? Name = null, string? Description = null, JsonElement? Settings = null);

public static class WorkspacesApi
{
    public static RouteGroupBuilder MapWorkspacesApi(this RouteGroupBuilder api)
    {
        var workspaces = api.MapGroup("/workspaces").WithTags("Workspaces");
        workspaces.MapGet("/", ListWorkspaces).WithSummary("The caller's workspaces (every workspace for a system Admin).");
        workspaces.MapPost("/", CreateWorkspace).SupportsIdempotencyKeys().WithSummary("Create a workspace; the caller becomes its Owner.");

        var workspace = api.MapWorkspaceScope().WithTags("Workspaces");
        workspace.MapGet("/", GetWorkspace).RequireWorkspacePermission(WorkspacePermission.Read)
            .WithSummary("One workspace (ETag from its row version).");
        workspace.MapPatch("/", UpdateWorkspace).RequireWorkspacePermission(WorkspacePermission.UpdateWorkspace).WithPreconditions()
            .WithSummary("Change the name, description or settings (If-Match with the ETag guards against lost updates).");
        workspace.MapDelete("/", DeleteWorkspace).RequireWorkspacePermission(WorkspacePermission.DeleteWorkspace).WithPreconditions()
            .WaitsOnWorkspaceDatabase().AnswersWorkspaceDatabaseFailures()
            .WithSummary("Soft-delete (hidden, slug stays reserved, databases stay claimed); ?purge=true (system Admin) removes it and everything "
                + "under it, leaving its databases detached (still claimed) unless &dropDatabases=true.");
        return api;
    }

    public static async Task<Results<Ok<PagedList<WorkspaceSummary>>, ValidationProblem>> ListWorkspaces(
        [AsParameters] PageRequest paging, HttpContext http, TcStudioDbContext db)
    {
        if (paging.Validate() is { Any: true } errors) return errors.ToProblem();

        var userId = http.User.UserId();
        var visible = http.User.IsSystemAdmin() ? db.Workspaces : db.Workspaces.Where(w => w.Members.Any(m => m.UserId == userId));
        var total = await visible.CountAsync(http.RequestAborted);
        var items = await visible.OrderBy(w => w.Slug).Skip(paging.Skip).Take(paging.Size)
            .Select(w => new WorkspaceSummary(w.Id, w.Name, w.Slug, w.Description, w.MemberCount,
                w.Members.Where(m => m.UserId == userId).Select(m => m.Role).FirstOrDefault(), w.CreatedAt, w.UpdatedAt)
            {
                ETag = ETags.From(w.Version),
            })
            .ToListAsync(http.RequestAborted);
        return TypedResults.Ok(paging.ToPage(items, total, http.Request));
    }

    public static async Task<Results<Created<WorkspaceDetails>, ValidationProblem, ProblemHttpResult>> CreateWorkspace(
        CreateWorkspaceRequest request, HttpContext http, TcStudioDbContext db, IOptions<QuotaOptions> quotas)
    {
        var errors = new FieldErrors()
            .Name("name", request.Name, Workspace.NameMaxLength, required: true)
            .Pattern("slug", request.Slug, FieldErrors.Slug(), "2–63 lowercase letters, digits or hyphens, not starting or ending with a hyphen")
            .Text("description", request.Description, Workspace.DescriptionMaxLength);
        if (errors.Any) return errors.ToProblem();

        var userId = http.User.UserId();
        if (!http.User.IsSystemAdmin())
        {
            // One user's creates take turns (a transaction-scoped lock on the user), so parallel requests cannot all
            // pass the count; the lock goes with the request's transaction.
            var limit = quotas.Value.WorkspacesPerUser;
            await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(hashtextextended({"tcstudio.quota.workspaces:" + userId}, 0))",
                http.RequestAborted);
            var owned = await db.Workspaces.CountAsync(w => w.Members.Any(m => m.UserId == userId && m.Role == WorkspaceRoles.Owner),
                http.RequestAborted);
            if (owned >= limit)
            {
                return ErrorCodes.Problem(ErrorCodes.WorkspaceQuotaReached, StatusCodes.Status409Conflict, "Quota reached.",
                     $"You already own {owned} workspace(s), your quota (Quotas:WorkspacesPerUser = {limit}). Delete one you no longer "
                        + "need, or ask a system Admin. Nothing was created.",
                    new Dictionary<string, object?> { ["quota"] = "workspacesPerUser", ["limit"] = limit });
            }
        }
        var workspace = new Workspace
        {
            Name = request.Name.Trim(),
            Slug = request.Slug,
            Description = string.IsNullOrEmpty(request.Description) ? null : request.Description,
            CreatedBy = userId,
        };
        db.Workspaces.Add(workspace);
        // Row-level security: the membership and the activity belong to the new workspace.
        http.RequestServices.GetRequiredService<RequestRowSecurity>().EnterWorkspace(workspace.Id);
        db.WorkspaceMembers.Add(new WorkspaceMember { WorkspaceId = workspace.Id, UserId = userId, Role = WorkspaceRoles.Owner });
        db.AddActivity(workspace.Id, userId, "workspace.created", EntityTypes.Workspace, workspace.Id,
            new { workspace.Name, workspace.Slug });
        await db.SaveChangesAsync(http.RequestAborted); // a taken slug → 23505 → 409 naming "slug"

        // The membership trigger bumped member_count (and so the row version) after the insert returned.
        var details = await LoadDetails(db, workspace.Id, userId, http.RequestAborted);
        http.Response.Headers.ETag = ETags.From(details.Version);
        return TypedResults.Created($"/api/workspaces/{workspace.Slug}", details.Details);
    }

    public static async Task<Ok<WorkspaceDetails>> GetWorkspace(CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var details = await LoadDetails(db, workspace.Id, workspace.UserId, http.RequestAborted);
        http.Response.Headers.ETag = ETags.From(details.Version);
        return TypedResults.Ok(details.Details);
    }

    public static async Task<Results<Ok<WorkspaceDetails>, ValidationProblem, ProblemHttpResult>> UpdateWorkspace(
        UpdateWorkspaceRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var errors = new FieldErrors()
            .Name("name", request.Name, Workspace.NameMaxLength, required: false)
            .Text("description", request.Description, Workspace.DescriptionMaxLength);
        if (request.Name is not null && string.IsNullOrWhiteSpace(request.Name)) errors.Add("name", "'name' must not be empty.");
        if (request.Settings is { ValueKind: not JsonValueKind.Object }) errors.Add("settings", "'settings' must be a JSON object.");
        if (errors.Any) return errors.ToProblem();

        var entity = await db.Workspaces.SingleAsync(w => w.Id == workspace.Id, http.RequestAborted);
        if (ETags.CheckPreconditions(http.Request, entity.Version, "workspace") is { } refused) return refused;

        var changed = new List<string>();
        if (request.Name is not null && request.Name.Trim() != entity.Name) { entity.Name = request.Name.Trim(); changed.Add("name"); }
        if (request.Description is not null)
        {
            var description = request.Description.Length == 0 ? null : request.Description;
            if (description != entity.Description) { entity.Description = description; changed.Add("description"); }
        }
        if (request.Settings is { } settings)
        {
            entity.Settings = JsonDocument.Parse(settings.GetRawText());
            changed.Add("settings");
        }
        if (changed.Count > 0)
        {
            db.AddActivity(workspace.Id, workspace.UserId, "workspace.updated", EntityTypes.Workspace, workspace.Id, new { changed });
            await db.SaveChangesAsync(http.RequestAborted);
        }

        var details = await LoadDetails(db, workspace.Id, workspace.UserId, http.RequestAborted);
        http.Response.Headers.ETag = ETags.From(details.Version);
        return TypedResults.Ok(details.Details);
    }

    /// <remarks>
    /// Waits on workspace databases (a purge may drop them), so it runs outside the scope's transaction: the soft delete
    /// is one SaveChanges, the purge one transaction of its own (EnvironmentProvisioning.PurgeWorkspaceAsync).
    /// </remarks>
    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteWorkspace(
        bool? purge, bool? dropDatabases, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db, TimeProvider clock,
        EnvironmentProvisioning provisioning)
    {
        if (purge == true)
        {
            if (!http.User.IsSystemAdmin()) return Problems.Forbidden("Only a system Admin may purge a workspace.");
            var version = await db.Workspaces.IgnoreQueryFilters().Where(w => w.Id == workspace.Id).Select(w => w.Version)
                .SingleAsync(http.RequestAborted);
            if (ETags.CheckPreconditions(http.Request, version, "workspace") is { } purgeRefused) return purgeRefused;
            // Everything under it goes by ON DELETE CASCADE, its own activity included; its databases are dropped
            // (dropDatabases=true) or stay claimed, detached. The purge itself is recorded as a system action.
            await provisioning.PurgeWorkspaceAsync(workspace.Id, workspace.Slug, dropDatabases == true, (context, dropped) =>
                context.AddActivity(null, workspace.UserId, "workspace.purged", EntityTypes.Workspace, workspace.Id,
                    new { workspace.Slug, droppedDatabases = dropped }), http.RequestAborted);
            return TypedResults.NoContent();
        }
        if (dropDatabases is not null)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "The request is not valid.",
                detail: "dropDatabases applies to a purge (?purge=true) only; a soft-deleted workspace keeps its databases.");
        }

        var entity = await db.Workspaces.SingleAsync(w => w.Id == workspace.Id, http.RequestAborted);
        if (ETags.CheckPreconditions(http.Request, entity.Version, "workspace") is { } refused) return refused;
        entity.DeletedAt = clock.GetUtcNow();
        db.AddActivity(workspace.Id, workspace.UserId, "workspace.deleted", EntityTypes.Workspace, workspace.Id, new { workspace.Slug });
        await db.SaveChangesAsync(http.RequestAborted);
        return TypedResults.NoContent();
    }

    private sealed record DetailsRow(WorkspaceDetails Details, uint Version);

    // Every GET, PATCH and create of a workspace reads it: a direct read (no EF query pipeline), the SQL EF wrote for it
    // (soft-deleted rows included: a purge's precondition reads one).
    private const string DetailsSql = """
        SELECT w.id, w.name, w.slug, w.description, w.settings, w.member_count, w.created_at, w.updated_at, w.xmin,
               (SELECT m.role FROM workspace_members AS m WHERE m.workspace_id = w.id AND m.user_id = $2 LIMIT 1)
        FROM workspaces AS w WHERE w.id = $1 LIMIT 2
        """;

    private static async Task<DetailsRow> LoadDetails(TcStudioDbContext db, Guid workspaceId, Guid userId, CancellationToken ct)
    {
        await using var read = await DirectRead.ExecuteAsync(db, DetailsSql, ct, workspaceId, userId);
        var reader = read.Reader;
        if (!await reader.ReadAsync(ct)) throw new InvalidOperationException($"Workspace {workspaceId} is not there to read.");
        var details = new WorkspaceDetails(reader.GetGuid(0), reader.GetString(1), reader.GetString(2),
            reader.IsDBNull(3) ? null : reader.GetString(3),
            // jsonb arrives as its text; the element owns its (small) bytes.
            JsonElement.Parse(reader.GetString(4)),
            reader.GetInt32(5), reader.IsDBNull(9) ? null : reader.GetString(9),
            reader.GetFieldValue<DateTimeOffset>(6), reader.GetFieldValue<DateTimeOffset>(7));
        return new DetailsRow(details, reader.GetFieldValue<uint>(8));
    }
}
