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

        // One row more than asked tells whether there is a next page, in the same query. A direct read (no EF query
        // pipeline): the page is the hottest read of a workspace screen, and EF's part cost more than the statement.
        var span = await months.GetAsync(db, cancellationToken);
        var (sql, values) = PageCommand(workspace.Id, after, request.Size + 1, span);
        var items = new List<ActivityResponse>(request.Size);
        var more = false;
        await using (var read = await DirectRead.ExecuteAsync(db, sql, cancellationToken, values))
        {
            var reader = read.Reader;
            while (await reader.ReadAsync(cancellationToken))
            {
                if (items.Count == request.Size)
                {
                    more = true;
                    break;
                }
                items.Add(new ActivityResponse(reader.GetGuid(0), reader.GetString(1), reader.GetString(2),
                    reader.IsDBNull(3) ? null : reader.GetGuid(3), reader.IsDBNull(4) ? null : reader.GetString(4),
                    // jsonb arrives as its text: parsed once into an element that owns its (small) bytes.
                    reader.IsDBNull(5) ? null : JsonElement.Parse(reader.GetString(5)), reader.GetFieldValue<DateTimeOffset>(6)));
            }
        }
        var next = more ? new ActivityCursor(items[^1].CreatedAt, items[^1].Id).Encode() : null;
        return TypedResults.Ok(CursorList<ActivityResponse>.Of(items, next, http));
    }

    /// <summary>
    /// The page's SQL and its values ($1 the workspace, $2 the row count, $3 and $4 the cursor's time and id). Keyset
    /// paging newest first: WHERE workspace_id = $1 AND (created_at, id) &lt; ($3, $4) ORDER BY created_at DESC, id DESC
    /// LIMIT $2, which walks the (workspace_id, created_at DESC, id DESC) index of each monthly partition from the cursor
    /// on, however deep the page. Rows of one instant are ordered (and split) by id.
    /// <para>
    /// With the activity log partitioned by month (<see cref="ActivityPartitions"/>) the page is the newest n rows of
    /// two parts: the months covered without a gap by monthly partitions (<paramref name="months"/>, written into the SQL
    /// as constants, formatted here from the catalog's partition bounds, so the planner prunes at plan time: it then
    /// knows the default partition holds none of them and reads the monthly partitions one after the other, newest
    /// first, stopping when it has n rows), and everything outside them (the default partition, normally empty). A
    /// created_at &lt;= $3 bound lets it skip months newer than the cursor. Soft-deleted users keep their name in the log.
    /// </para>
    /// </summary>
    internal static (string Sql, object[] Values) PageCommand(Guid workspaceId, ActivityCursor? after, int take, ActivityMonthSpan? months)
    {
        var sql = PageSql.GetOrAdd((after is not null, months), static key => BuildPageSql(key.Cursor, key.Months));
        return (sql, after is { } cursor ? [workspaceId, take, cursor.CreatedAt, cursor.Id] : [workspaceId, take]);
    }

    // One text per (cursor or not, span of months): a handful over a process's life (the span moves monthly).
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(bool Cursor, ActivityMonthSpan? Months), string> PageSql = new();

    private static string BuildPageSql(bool cursor, ActivityMonthSpan? months)
    {
        const string Columns = "a.id, a.user_id, a.action, a.entity_type, a.entity_id, a.details, a.created_at";
        const string Newest = "ORDER BY a.created_at DESC, a.id DESC LIMIT $2";
        var where = "a.workspace_id = $1" + (cursor ? " AND a.created_at <= $3 AND (a.created_at, a.id) < ($3, $4)" : "");
        var source = "activities AS a WHERE " + where;
        if (months is { } span)
        {
            var (from, to) = (Timestamp(span.From), Timestamp(span.To));
            source = $"""
                ((SELECT {Columns} FROM activities AS a WHERE {where} AND a.created_at >= {from} AND a.created_at < {to} {Newest})
                 UNION ALL
                 (SELECT {Columns} FROM activities AS a WHERE {where} AND (a.created_at < {from} OR a.created_at >= {to}) {Newest})) AS a
                """;
        }
        return $"""
            SELECT a.id, a.action, a.entity_type, a.entity_id, (SELECT u.username FROM users AS u WHERE u.id = a.user_id LIMIT 1),
                   a.details, a.created_at
            FROM {source}
            {Newest}
            """;
    }

    private static string Timestamp(DateTimeOffset value) =>
        "TIMESTAMPTZ '" + value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.ffffff", System.Globalization.CultureInfo.InvariantCulture) + "+00'";
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
