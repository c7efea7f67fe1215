using System.Buffers.Binary;
using System.Buffers.Text;
using System.Text.Json;
using TcStudio.Api.Workspaces;
using TcStudio.SystemDatabase.Activities;

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
        [AsParameters] ActivityPageRequest request, CurrentWorkspace workspace, TcStudioDbContext db, ActivityMonthSpanCache months, HttpRequest http,
        CancellationToken cancellationToken)
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
        var span = await months.GetAsync(db, cancellationToken);
        var rows = await PageQuery(db, workspace.Id, after, request.Size + 1, span).ToListAsync(cancellationToken);
        var items = rows.Take(request.Size).Select(r => new ActivityResponse(r.Id, r.Action, r.EntityType, r.EntityId, r.Username,
            r.Details?.RootElement.Clone(), r.CreatedAt)).ToList();
        // The clones own their bytes: the documents go back now, returning their pooled buffers (left to the GC, every
        // row's document made the pool allocate afresh: about 8 KB per row, most of what a page allocated).
        foreach (var row in rows) row.Details?.Dispose();
        var next = rows.Count > request.Size ? new ActivityCursor(items[^1].CreatedAt, items[^1].Id).Encode() : null;
        return TypedResults.Ok(CursorList<ActivityResponse>.Of(items, next, http));
    }

    internal sealed record ActivityRow(Guid Id, string Action, string EntityType, Guid? EntityId, string? Username,
        JsonDocument? Details, DateTimeOffset CreatedAt);

    /// <summary>
    /// Keyset paging newest first: WHERE workspace_id = @w AND (created_at, id) &lt; (@at, @id) ORDER BY created_at DESC,
    /// id DESC LIMIT n, which walks the (workspace_id, created_at DESC, id DESC) index of each monthly partition from the
    /// cursor on, however deep the page. Rows of one instant are ordered (and split) by id.
    /// <para>
    /// With the activity log partitioned by month (<see cref="ActivityPartitions"/>) the page is the newest n rows of
    /// two parts: the months covered without a gap by monthly partitions (<paramref name="months"/>, written into the SQL
    /// as constants so the planner prunes at plan time: it then knows the default partition holds none of them and reads
    /// the monthly partitions one after the other, newest first, stopping when it has n rows), and everything outside
    /// them (the default partition, normally empty). A created_at &lt;= @at bound lets it skip months newer than the cursor.
    /// </para>
    /// </summary>
    internal static IQueryable<ActivityRow> PageQuery(TcStudioDbContext db, Guid workspaceId, ActivityCursor? after, int take,
        ActivityMonthSpan? months = null)
    {
        var activities = db.Activities.AsNoTracking().IgnoreQueryFilters().Where(a => a.WorkspaceId == workspaceId);
        if (after is { } cursor)
        {
            var (createdAt, id) = (cursor.CreatedAt, cursor.Id);
            activities = activities.Where(a => a.CreatedAt <= createdAt
                && EF.Functions.LessThan(ValueTuple.Create(a.CreatedAt, a.Id), ValueTuple.Create(createdAt, id)));
        }
        if (months is { } span)
        {
            var (from, to) = (span.From, span.To);
            var inMonths = activities.Where(a => a.CreatedAt >= EF.Constant(from) && a.CreatedAt < EF.Constant(to))
                .OrderByDescending(a => a.CreatedAt).ThenByDescending(a => a.Id).Take(take);
            var outside = activities.Where(a => a.CreatedAt < EF.Constant(from) || a.CreatedAt >= EF.Constant(to))
                .OrderByDescending(a => a.CreatedAt).ThenByDescending(a => a.Id).Take(take);
            activities = inMonths.Concat(outside);
        }
        // Soft-deleted users keep their name in the log (IgnoreQueryFilters above).
        return activities.OrderByDescending(a => a.CreatedAt).ThenByDescending(a => a.Id).Take(take)
            .Select(a => new ActivityRow(a.Id, a.Action, a.EntityType, a.EntityId,
                db.Users.Where(u => u.Id == a.UserId).Select(u => u.Username).FirstOrDefault(),
                a.Details, a.CreatedAt));
    }
}

/// <summary>
/// The activity log's span of monthly partitions (<see cref="ActivityPartitions.ContiguousSpan"/>), read from the
/// catalog at most once a minute: partitions change monthly, by the worker. Null before the log is partitioned.
/// </summary>
public sealed class ActivityMonthSpanCache(TimeProvider clock)
{
    public static readonly TimeSpan RefreshEvery = TimeSpan.FromMinutes(1);

    private sealed record Entry(ActivityMonthSpan? Span, DateTimeOffset ReadAt);

    private Entry? _entry;

    public async Task<ActivityMonthSpan?> GetAsync(TcStudioDbContext db, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        if (_entry is { } entry && now - entry.ReadAt < RefreshEvery) return entry.Span;
        var names = await db.Database.SqlQueryRaw<string>(ActivityPartitions.ListPartitionNamesSql).ToListAsync(cancellationToken);
        var span = ActivityPartitions.ContiguousSpan(names.Select(n => ActivityPartitions.TryParseMonth(n, out var m) ? m : (DateOnly?)null)
            .OfType<DateOnly>());
        _entry = new Entry(span, now);
        return span;
    }

    /// <summary>Forget the span (tests that create or drop partitions).</summary>
    public void Reset() => _entry = null;
}
