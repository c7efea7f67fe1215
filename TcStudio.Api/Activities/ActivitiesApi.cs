using System.Buffers.Binary;
using System.Buffers.Text;
using System.Text.Json;
using TcStudio.Api.Workspaces;

namespace TcStudio.Api.Activities;

/// <param name="Username">Who did it; null for system actions (and for users removed for good).</param>
public sealed record ActivityResponse(Guid Id, string Action, string EntityType, Guid? EntityId, string? Username,
    JsonElement? Details, DateTimeOffset CreatedAt);

/// <summary>?cursor=&amp;limit= for the activity log (limit 1–200, default 50).</summary>
public sealed record ActivityPageRequest(string? Cursor, int? Limit)
{
    public const int DefaultLimit = 50;
    public const int MaxLimit = 200;

    public int Size => Limit ?? DefaultLimit;
}

/// <summary>
/// The position after the last row of a page: (created_at, id) of that row. Opaque to callers: base64url of a
/// format byte, the UTC ticks and the id, so the format can change without breaking anyone who treats it as a token.
/// </summary>
public readonly record struct ActivityCursor(DateTimeOffset CreatedAt, Guid Id)
{
    private const byte Format = 1;
    private const int ByteLength = 1 + sizeof(long) + 16;

    public string Encode()
    {
        Span<byte> bytes = stackalloc byte[ByteLength];
        bytes[0] = Format;
        BinaryPrimitives.WriteInt64BigEndian(bytes[1..], CreatedAt.UtcTicks);
        Id.TryWriteBytes(bytes[9..], bigEndian: true, out _);
        return Base64Url.EncodeToString(bytes);
    }

    public static bool TryDecode(string text, out ActivityCursor cursor)
    {
        cursor = default;
        if (text.Length is 0 or > 64) return false;
        Span<byte> bytes = stackalloc byte[48];
        if (!Base64Url.IsValid(text) || Base64Url.GetMaxDecodedLength(text.Length) > bytes.Length) return false;
        if (Base64Url.DecodeFromChars(text, bytes, out _, out var written) != System.Buffers.OperationStatus.Done
            || written != ByteLength || bytes[0] != Format)
        {
            return false;
        }
        var ticks = BinaryPrimitives.ReadInt64BigEndian(bytes[1..]);
        if (ticks < DateTimeOffset.MinValue.UtcTicks || ticks > DateTimeOffset.MaxValue.UtcTicks) return false;
        cursor = new ActivityCursor(new DateTimeOffset(ticks, TimeSpan.Zero), new Guid(bytes[9..ByteLength], bigEndian: true));
        return true;
    }
}

public static class ActivitiesApi
{
    public static RouteGroupBuilder MapActivitiesApi(this RouteGroupBuilder api)
    {
        var workspace = api.MapWorkspaceScope().WithTags("Activities");
        workspace.MapGet("/activities", ListActivities).RequireWorkspacePermission(WorkspacePermission.Read)
            .WithSummary("The workspace's activity log, newest first, in pages linked by an opaque cursor.");
        return api;
    }

    /// <summary>A cursor list: nextCursor (pass as ?cursor=) and next (its URL) lead to the next, older page; both are absent on the last.</summary>
    public static async Task<Results<Ok<CursorList<ActivityResponse>>, ValidationProblem>> ListActivities(
        [AsParameters] ActivityPageRequest request, CurrentWorkspace workspace, TcStudioDbContext db, HttpRequest http, CancellationToken cancellationToken)
    {
        var errors = new FieldErrors().Range("limit", request.Limit, 1, ActivityPageRequest.MaxLimit);
        ActivityCursor? after = null;
        if (request.Cursor is not null)
        {
            if (ActivityCursor.TryDecode(request.Cursor, out var cursor)) after = cursor;
            else errors.Add("cursor", "'cursor' is not a cursor this API returned.");
        }
        if (errors.Any) return errors.ToProblem();

        // One row more than asked tells whether there is a next page, in the same query.
        var rows = await PageQuery(db, workspace.Id, after, request.Size + 1).ToListAsync(cancellationToken);
        var items = rows.Take(request.Size).Select(r => new ActivityResponse(r.Id, r.Action, r.EntityType, r.EntityId, r.Username,
            r.Details?.RootElement.Clone(), r.CreatedAt)).ToList();
        var next = rows.Count > request.Size ? new ActivityCursor(items[^1].CreatedAt, items[^1].Id).Encode() : null;
        return TypedResults.Ok(CursorList<ActivityResponse>.Of(items, next, http));
    }

    internal sealed record ActivityRow(Guid Id, string Action, string EntityType, Guid? EntityId, string? Username,
        JsonDocument? Details, DateTimeOffset CreatedAt);

    /// <summary>
    /// Keyset paging newest first: WHERE workspace_id = @w AND (created_at, id) &lt; (@at, @id) ORDER BY created_at DESC,
    /// id DESC LIMIT n, which walks ix_activities_workspace_id_created_at (workspace_id, created_at DESC, id DESC)
    /// from the cursor on, however deep the page. Rows of one instant are ordered (and split) by id.
    /// </summary>
    internal static IQueryable<ActivityRow> PageQuery(TcStudioDbContext db, Guid workspaceId, ActivityCursor? after, int take)
    {
        var activities = db.Activities.AsNoTracking().IgnoreQueryFilters().Where(a => a.WorkspaceId == workspaceId);
        if (after is { } cursor)
        {
            var (createdAt, id) = (cursor.CreatedAt, cursor.Id);
            activities = activities.Where(a => EF.Functions.LessThan(ValueTuple.Create(a.CreatedAt, a.Id), ValueTuple.Create(createdAt, id)));
        }
        // Soft-deleted users keep their name in the log (IgnoreQueryFilters above).
        return activities.OrderByDescending(a => a.CreatedAt).ThenByDescending(a => a.Id).Take(take)
            .Select(a => new ActivityRow(a.Id, a.Action, a.EntityType, a.EntityId,
                db.Users.Where(u => u.Id == a.UserId).Select(u => u.Username).FirstOrDefault(),
                a.Details, a.CreatedAt));
    }
}
