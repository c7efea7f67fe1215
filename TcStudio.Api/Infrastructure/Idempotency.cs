using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.Api.Auth;

namespace TcStudio.Api.Infrastructure;

/// <summary>The configuration section <c>Idempotency</c>.</summary>
public sealed class IdempotencyOptions
{
    public const string SectionName = "Idempotency";

    /// <summary>How long a key and its response are kept: a retry within this time replays the first response.</summary>
    public TimeSpan KeyLifetime { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How often expired keys are deleted.</summary>
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(10);
}

/// <summary>Marks endpoints whose POSTs honour Idempotency-Key (<see cref="IdempotencyFilter"/>).</summary>
public sealed record SupportsIdempotencyKeys;

/// <summary>Marks an anonymous endpoint that ignores Idempotency-Key (issuing a token twice is harmless, and tokens are never stored).</summary>
public sealed record IgnoresIdempotencyKeys;

/// <summary>
/// <c>Idempotency-Key</c> on POST: the first successful (2xx) response to a key is stored with the request's
/// fingerprint (method, path, query, body) in <c>idempotency_keys</c>, per user, for Idempotency:KeyLifetime (24 h).
/// A retry with the same key and the same request gets that response again (status, body, ETag, Location, and
/// <c>Idempotent-Replayed: true</c>) without the work being done again; the same key with another request is a 422;
/// while the first is still running, a duplicate is a 409 with Retry-After. Failed requests (4xx, 5xx) store
/// nothing: retrying them does the work (or fails) again.
/// <para>
/// Where the key is written decides what a crash can do (README, "Idempotency-Key"):
/// <list type="bullet">
/// <item>routes that run in one system-database transaction (writes, <see cref="RequestUnitOfWork"/>): in that transaction, under a transaction-level
/// advisory lock on the key. The work and its key commit together or not at all;</item>
/// <item>routes that wait on a workspace database and save at the end (publish, execute, create and migrate an
/// environment): with the handler's final save (<see cref="RecordWithNextSave"/>), so the system database never
/// records the work without its key;</item>
/// <item>others (validate, which writes nothing): right after the handler, in a transaction of its own.</item>
/// </list>
/// </para>
/// </summary>
public sealed partial class IdempotentRequests(TcStudioDbContext db, IOptions<IdempotencyOptions> options, TimeProvider clock,
    InFlightIdempotencyKeys inFlight)
{
    public const string HeaderName = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";

    /// <summary>First half of the two-int advisory lock key: its own key space, apart from the migration lock's.</summary>
    private const int AdvisoryLockClass = 0x1de7_0001;

    private static readonly AsyncLocal<IdempotencyClaim?> CurrentClaim = new();

    /// <summary>The key of the request this code runs for, while its handler runs.</summary>
    internal static IdempotencyClaim? Current => CurrentClaim.Value;

    /// <summary>
    /// Runs <paramref name="work"/> (the handler) under the request's Idempotency-Key, if it has one: replays a stored
    /// response, refuses a reused or busy key, or runs the work and stores its successful response.
    /// <paramref name="inTransaction"/>: the caller holds a transaction on <c>db</c> that commits with the work.
    /// </summary>
    public async Task<object?> RunAsync(HttpContext http, bool inTransaction, Func<ValueTask<object?>> work, CancellationToken cancellationToken)
    {
        if (!HttpMethods.IsPost(http.Request.Method) || !http.Request.Headers.TryGetValue(HeaderName, out var header)
            || http.User.Identity?.IsAuthenticated != true)
        {
            return await work();
        }
        if (!TryParseKey(header, out var key)) return MalformedKey();
        var userId = http.User.UserId();
        var fingerprint = http.Items[RequestGuards.RequestHashItem] as byte[] ?? RequestGuards.Fingerprint(http.Request, []);

        var guard = inTransaction ? null : inFlight.TryEnter(userId, key);
        if (!inTransaction && guard is null) return InProgress(http, key);
        try
        {
            if (inTransaction && !await TryLockAsync(userId, key, cancellationToken)) return InProgress(http, key);

            var now = clock.GetUtcNow();
            var stored = await db.IdempotencyKeys.AsNoTracking().Where(k => k.UserId == userId && k.Key == key)
                .Select(k => new { k.RequestHash, k.ExpiresAt, k.StatusCode, k.ContentType, k.Location, k.ETag, k.ResponseBody })
                .SingleOrDefaultAsync(cancellationToken);
            if (stored is not null && stored.ExpiresAt > now)
            {
                if (!stored.RequestHash.AsSpan().SequenceEqual(fingerprint)) return ReusedKey(key);
                return new StoredResponse(new CapturedResponse(stored.StatusCode, stored.ContentType, stored.Location, stored.ETag,
                    stored.ResponseBody), Replayed: true);
            }
            if (stored is not null)
            {
                // Expired but not cleaned up yet: it no longer counts, and must not block this request's own row.
                await db.IdempotencyKeys.Where(k => k.UserId == userId && k.Key == key && k.ExpiresAt <= now).ExecuteDeleteAsync(cancellationToken);
            }

            var claim = new IdempotencyClaim(http, userId, key, fingerprint, now, now + options.Value.KeyLifetime);
            CurrentClaim.Value = claim;
            object? result;
            try
            {
                result = await work();
            }
            finally
            {
                CurrentClaim.Value = null;
            }
            if (!ConditionalRequestFilter.IsSuccess(result) || result is StoredResponse) return result;
            if (claim.Recorded is { } recorded) return new StoredResponse(recorded, Replayed: false);

            var captured = await CapturedResponse.CaptureAsync(http, result);
            if (captured.StatusCode is < 200 or > 299) return result;
            await InsertAsync(claim.ToRow(captured), cancellationToken);
            return new StoredResponse(captured, Replayed: false);
        }
        finally
        {
            guard?.Dispose();
        }
    }

    /// <summary>
    /// For handlers that wait on a workspace database and save at the end: the key and the response
    /// <paramref name="response"/> renders are written by the next SaveChanges, in its transaction (rendered during that
    /// save, after the audit timestamps are set, so it shows what is stored). Does nothing without a key.
    /// </summary>
    public static void RecordWithNextSave(HttpContext http, Func<IResult> response)
    {
        if (Current is { } claim && ReferenceEquals(claim.Http, http)) claim.Pending = response;
    }

    internal static bool TryParseKey(Microsoft.Extensions.Primitives.StringValues header, out string key)
    {
        key = "";
        if (header.Count != 1 || header[0] is not { } raw) return false;
        raw = raw.Trim(' ', '\t');
        if (raw.Length >= 2 && raw[0] == '"' && raw[^1] == '"')
        {
            // A Structured Field string, as the IETF draft writes it: "…" with \" and \\ escapes.
            var text = new System.Text.StringBuilder();
            for (var i = 1; i < raw.Length - 1; i++)
            {
                var c = raw[i];
                if (c == '\\')
                {
                    if (++i >= raw.Length - 1 || raw[i] is not ('"' or '\\')) return false;
                    c = raw[i];
                }
                else if (c == '"' || c < ' ' || c > '~')
                {
                    return false;
                }

                text.Append(c);
            }
            raw = text.ToString();
        }
        else if (raw.Any(c => c <= ' ' || c > '~' || c is '"' or ','))
        {
            return false;
        }
        if (raw.Length is 0 or > IdempotencyKey.KeyMaxLength || string.IsNullOrWhiteSpace(raw)) return false;
        key = raw;
        return true;
    }

    private async Task<bool> TryLockAsync(Guid userId, string key, CancellationToken cancellationToken)
    {
        RequestUnitOfWork.RequireTransaction(db.Database, "Claiming an Idempotency-Key");
        var name = $"{userId:N}:{key}";
        // Transaction-level: released by the commit or rollback that ends the work, or by the connection's death.
        return await db.Database.SqlQuery<bool>(
            $"SELECT pg_try_advisory_xact_lock({AdvisoryLockClass}, hashtext({name})) AS \"Value\"").SingleAsync(cancellationToken);
    }

    private Task InsertAsync(IdempotencyKey row, CancellationToken cancellationToken) =>
        // Raw SQL, so nothing else the handler left in the change tracker is saved with it.
        db.Database.ExecuteSqlAsync($"""
            INSERT INTO idempotency_keys (user_id, key, request_hash, method, path, status_code, content_type, location, etag,
                response_body, created_at, expires_at)
            VALUES ({row.UserId}, {row.Key}, {row.RequestHash}, {row.Method}, {row.Path}, {row.StatusCode}, {row.ContentType},
                {row.Location}, {row.ETag}, {row.ResponseBody}, {row.CreatedAt}, {row.ExpiresAt})
            """, cancellationToken);

    private static ProblemHttpResult MalformedKey() =>
        TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "The request is not valid.",
            detail: $"The {HeaderName} header must be one value of 1 to {IdempotencyKey.KeyMaxLength} visible ASCII characters "
                + "(for example a UUID), bare or as a quoted string. Nothing was changed.",
            extensions: new Dictionary<string, object?>
            {
                [ErrorCodes.Extension] = ErrorCodes.IdempotencyKeyInvalid,
                ["errors"] = new Dictionary<string, string[]> { [HeaderName] = [$"'{HeaderName}' is malformed."] },
            });

    private static ProblemHttpResult ReusedKey(string key) =>
        TypedResults.Problem(statusCode: StatusCodes.Status422UnprocessableEntity,
            title: "The Idempotency-Key was already used for another request.",
            detail: $"Key '{key}' was first sent with a different method, path, query or body. Use a new key for a new request. Nothing was changed.",
            extensions: new Dictionary<string, object?> { ["idempotencyKey"] = key, [ErrorCodes.Extension] = ErrorCodes.IdempotencyKeyReused });

    internal static ProblemHttpResult InProgress(HttpContext http, string key)
    {
        http.Response.Headers.RetryAfter = "1";
        return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict,
            title: "A request with this Idempotency-Key is still in progress.",
            detail: $"The first request with key '{key}' has not finished yet. Retry after it has: you will get its response.",
            extensions: new Dictionary<string, object?> { ["idempotencyKey"] = key, [ErrorCodes.Extension] = ErrorCodes.IdempotencyInProgress });
    }
}

/// <summary>One request's key while its handler runs (see <see cref="IdempotentRequests.RecordWithNextSave"/>).</summary>
internal sealed class IdempotencyClaim(HttpContext http, Guid userId, string key, byte[] fingerprint, DateTimeOffset createdAt,
    DateTimeOffset expiresAt)
{
    public HttpContext Http { get; } = http;
    public Func<IResult>? Pending { get; set; }
    public (IdempotencyKey Row, CapturedResponse Response)? Staged { get; set; }
    public CapturedResponse? Recorded { get; set; }

    public IdempotencyKey ToRow(CapturedResponse response) => new()
    {
        UserId = userId,
        Key = key,
        RequestHash = fingerprint,
        Method = Http.Request.Method,
        Path = Truncate($"{Http.Request.PathBase}{Http.Request.Path}", IdempotencyKey.PathMaxLength),
        StatusCode = response.StatusCode,
        ContentType = response.ContentType,
        Location = response.Location is null ? null : Truncate(response.Location, IdempotencyKey.PathMaxLength),
        ETag = response.ETag,
        ResponseBody = response.Body,
        CreatedAt = createdAt,
        ExpiresAt = expiresAt,
    };

    private static string Truncate(string value, int length) => value.Length <= length ? value : value[..length];
}

/// <summary>A response as bytes and the headers that matter to a client: what is stored and replayed.</summary>
public sealed record CapturedResponse(int StatusCode, string? ContentType, string? Location, string? ETag, byte[] Body)
{
    /// <summary>Executes <paramref name="result"/> into a buffer (not the client's response) and keeps what it wrote.</summary>
    public static async Task<CapturedResponse> CaptureAsync(HttpContext http, object? result)
    {
        var scratch = new DefaultHttpContext { RequestServices = http.RequestServices };
        scratch.Request.Method = http.Request.Method;
        scratch.Request.Scheme = http.Request.Scheme;
        scratch.Request.Host = http.Request.Host;
        scratch.Request.PathBase = http.Request.PathBase;
        scratch.Request.Path = http.Request.Path;
        using var body = new MemoryStream();
        scratch.Response.Body = body;
        var executable = result as IResult ?? TypedResults.Json(result);
        await executable.ExecuteAsync(scratch);
        await scratch.Response.CompleteAsync();

        // Handlers set ETag on the real response before returning their result.
        var etag = http.Response.Headers.ETag.Count > 0 ? http.Response.Headers.ETag.ToString()
            : scratch.Response.Headers.ETag.Count > 0 ? scratch.Response.Headers.ETag.ToString() : null;
        var location = scratch.Response.Headers.Location.Count > 0 ? scratch.Response.Headers.Location.ToString() : null;
        return new CapturedResponse(scratch.Response.StatusCode, scratch.Response.ContentType, location, etag, body.ToArray());
    }
}

/// <summary>Writes a <see cref="CapturedResponse"/>: the first answer to a key, and every replay of it.</summary>
public sealed record StoredResponse(CapturedResponse Response, bool Replayed) : IResult, IStatusCodeHttpResult
{
    public int? StatusCode => Response.StatusCode;

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = Response.StatusCode;
        if (Response.ContentType is { } contentType) response.ContentType = contentType;
        if (Response.Location is { } location) response.Headers.Location = location;
        if (Response.ETag is { } etag) response.Headers.ETag = etag;
        if (Replayed) response.Headers[IdempotentRequests.ReplayedHeader] = "true";
        if (Response.Body.Length > 0)
        {
            response.ContentLength = Response.Body.Length;
            await response.Body.WriteAsync(Response.Body, httpContext.RequestAborted);
        }
    }
}

/// <summary>
/// Keys whose request is running in this process, for routes that hold no transaction while they work (a duplicate
/// arriving meanwhile is a 409 instead of a second run).
/// </summary>
public sealed class InFlightIdempotencyKeys
{
    private readonly ConcurrentDictionary<(Guid UserId, string Key), byte> _running = new();

    public IDisposable? TryEnter(Guid userId, string key) =>
        _running.TryAdd((userId, key), 0) ? new Release(this, (userId, key)) : null;

    private sealed class Release(InFlightIdempotencyKeys owner, (Guid, string) entry) : IDisposable
    {
        public void Dispose() => owner._running.TryRemove(entry, out _);
    }
}

/// <summary>
/// Writes the staged key of <see cref="IdempotentRequests.RecordWithNextSave"/> with the handler's SaveChanges.
/// Registered after the audit-timestamps interceptor, so the response is rendered from stamped values.
/// </summary>
public sealed class IdempotencyRecordInterceptor : ISaveChangesInterceptor
{
    public InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        StageAsync(eventData.Context).GetAwaiter().GetResult();
        return result;
    }

    public async ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        await StageAsync(eventData.Context);
        return result;
    }

    public int SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        Complete(eventData.Context, saved: true);
        return result;
    }

    public ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        Complete(eventData.Context, saved: true);
        return ValueTask.FromResult(result);
    }

    public void SaveChangesFailed(DbContextErrorEventData eventData) => Complete(eventData.Context, saved: false);

    public Task SaveChangesFailedAsync(DbContextErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Complete(eventData.Context, saved: false);
        return Task.CompletedTask;
    }

    private static async Task StageAsync(DbContext? context)
    {
        if (context is not TcStudioDbContext db || IdempotentRequests.Current is not { Pending: { } render } claim) return;
        claim.Pending = null;
        var response = await CapturedResponse.CaptureAsync(claim.Http, render());
        if (response.StatusCode is < 200 or > 299) return;
        var row = claim.ToRow(response);
        db.IdempotencyKeys.Add(row);
        claim.Staged = (row, response);
    }

    private static void Complete(DbContext? context, bool saved)
    {
        if (IdempotentRequests.Current is not { Staged: { } staged } claim) return;
        claim.Staged = null;
        if (saved) claim.Recorded = staged.Response;
        else if (context is not null) context.Entry(staged.Row).State = EntityState.Detached;
    }
}

/// <summary>Deletes expired keys every Idempotency:CleanupInterval, in batches, so the table holds about a day of keys.</summary>
public sealed partial class IdempotencyKeyCleanup(IServiceScopeFactory scopes, IOptions<IdempotencyOptions> options, TimeProvider clock,
    ILogger<IdempotencyKeyCleanup> logger) : BackgroundService
{
    public const int BatchSize = 1000;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(options.Value.CleanupInterval, clock, stoppingToken);
                await DeleteExpiredAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is NpgsqlException or DbUpdateException or InvalidOperationException)
            {
                LogCleanupFailed(logger, e.GetType().Name);
            }
        }
    }

    /// <returns>How many keys were deleted.</returns>
    public async Task<int> DeleteExpiredAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
        var now = clock.GetUtcNow();
        var total = 0;
        int deleted;
        do
        {
            // Small batches by the expiry index: short transactions, no long lock on the table.
            deleted = await db.Database.ExecuteSqlAsync($"""
                DELETE FROM idempotency_keys WHERE (user_id, key) IN (
                    SELECT user_id, key FROM idempotency_keys WHERE expires_at <= {now} ORDER BY expires_at LIMIT {BatchSize})
                """, cancellationToken);
            total += deleted;
        } while (deleted == BatchSize);
        if (total > 0) LogDeleted(logger, total);
        return total;
    }

    [LoggerMessage(EventId = 4201, Level = LogLevel.Information, Message = "Deleted {Count} expired idempotency key(s)")]
    private static partial void LogDeleted(ILogger logger, int count);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Warning,
        Message = "Deleting expired idempotency keys failed ({Error}); trying again at the next interval")]
    private static partial void LogCleanupFailed(ILogger logger, string error);
}

public static class IdempotencyExtensions
{
    public static RouteHandlerBuilder IgnoresIdempotencyKeys(this RouteHandlerBuilder endpoint) =>
        endpoint.WithMetadata(new IgnoresIdempotencyKeys());
}

/// <summary>
/// For every endpoint under /api: a POST with an Idempotency-Key on a route that cannot honour it is refused (400)
/// instead of running without the protection the caller asked for.
/// </summary>
public sealed class IdempotencyKeyGuardFilter : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (!HttpMethods.IsPost(http.Request.Method) || !http.Request.Headers.ContainsKey(IdempotentRequests.HeaderName)) return next(context);
        var metadata = http.GetEndpoint()?.Metadata;
        if (metadata?.GetMetadata<SupportsIdempotencyKeys>() is not null || metadata?.GetMetadata<IgnoresIdempotencyKeys>() is not null)
        {
            return next(context);
        }
        return ValueTask.FromResult<object?>(TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "The request is not valid.",
            detail: $"This route does not support {IdempotentRequests.HeaderName}. Nothing was changed.",
            extensions: new Dictionary<string, object?>
            {
                [ErrorCodes.Extension] = ErrorCodes.IdempotencyKeyInvalid,
                ["errors"] = new Dictionary<string, string[]> { [IdempotentRequests.HeaderName] = ["Not supported by this route."] },
            }));
    }
}
