using System.Buffers;
using System.Security.Claims;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using TcStudio.Api.Workspaces;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.Api.Events;

/// <summary>
/// The response of GET /api/workspaces/{slug}/events: a Server-Sent Events stream of the workspace's activity from
/// <see cref="Start"/> on, until the client goes, the caller loses access, the token expires or the instance stops.
/// </summary>
/// <remarks>
/// It holds no database connection while it waits: new events come from the workspace's feed (memory); a stream that
/// is behind what the feed keeps reads the table itself, one short read at a time; access checks are one short
/// query each. Frames: <c>event: ready</c> first (its id is the start position), then one unnamed event per activity
/// (<c>id:</c> position, <c>data:</c> the activity), <c>: heartbeat</c> comments while idle, and <c>event: end</c>
/// with a reason when the server ends the stream.
/// </remarks>
public sealed partial class ActivityEventStream(WorkspaceAccess workspace, ActivityStreamPosition start) : IResult
{
    public const string ContentType = "text/event-stream";

    public WorkspaceAccess Workspace => workspace;
    public ActivityStreamPosition Start => start;

    public async Task ExecuteAsync(HttpContext http)
    {
        var services = http.RequestServices;
        var metrics = services.GetRequiredService<EventStreamMetrics>();
        var lifetime = services.GetRequiredService<IHostApplicationLifetime>();
        var logger = services.GetRequiredService<ILogger<ActivityEventStream>>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, lifetime.ApplicationStopping);

        var response = http.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = ContentType;
        response.Headers.CacheControl = "no-cache, no-store";
        // nginx and similar proxies buffer responses unless told not to.
        response.Headers["X-Accel-Buffering"] = "no";
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        metrics.StreamOpened();
        var feeds = services.GetRequiredService<WorkspaceActivityFeeds>();
        using var subscription = feeds.Subscribe(workspace.WorkspaceId);
        string? reason = null;
        try
        {
            var session = new Session(http, workspace, subscription.Feed, start, services, stop.Token);
            reason = await session.RunAsync();
        }
        catch (OperationCanceledException)
        {
            // The client left (or a write found it gone), or the instance is stopping: then say so before closing.
            if (lifetime.ApplicationStopping.IsCancellationRequested && !http.RequestAborted.IsCancellationRequested) reason = EndReasons.Shutdown;
        }
        catch (Exception e) when (e is IOException || http.RequestAborted.IsCancellationRequested)
        {
            // The client went away mid-write.
        }
        finally
        {
            metrics.StreamClosed();
        }

        if (reason is not null && !http.RequestAborted.IsCancellationRequested)
        {
            LogEnded(logger, workspace.Slug, reason);
            try
            {
                using var last = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await response.BodyWriter.WriteAsync(StreamEventFormatter.End(reason), last.Token);
                await response.BodyWriter.FlushAsync(last.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
                // Ending anyway.
            }
        }
    }

    /// <summary>One stream's state and loop.</summary>
    private sealed class Session
    {
        private readonly HttpContext _http;
        private readonly WorkspaceAccess _workspace;
        private readonly WorkspaceFeed _feed;
        private readonly ActivityStreamDatabase _database;
        private readonly StreamEventFormatter _formatter;
        private readonly StreamAccess _access;
        private readonly EventStreamMetrics _metrics;
        private readonly ActivityStreamOptions _options;
        private readonly TimeProvider _clock;
        private readonly ILogger _logger;
        private readonly CancellationToken _cancellationToken;
        private readonly DateTimeOffset _tokenExpiresAt;
        private readonly Guid _userId;
        private ActivityStreamPosition _cursor;
        private DateTimeOffset _nextHeartbeat;
        private DateTimeOffset _nextAccessCheck;

        public Session(HttpContext http, WorkspaceAccess workspace, WorkspaceFeed feed, ActivityStreamPosition start,
            IServiceProvider services, CancellationToken cancellationToken)
        {
            _http = http;
            _workspace = workspace;
            _feed = feed;
            _cursor = start;
            _database = services.GetRequiredService<ActivityStreamDatabase>();
            _formatter = services.GetRequiredService<StreamEventFormatter>();
            _access = services.GetRequiredService<StreamAccess>();
            _metrics = services.GetRequiredService<EventStreamMetrics>();
            _options = services.GetRequiredService<IOptions<ActivityStreamOptions>>().Value;
            _clock = services.GetRequiredService<TimeProvider>();
            _logger = services.GetRequiredService<ILogger<ActivityEventStream>>();
            _cancellationToken = cancellationToken;
            _tokenExpiresAt = TokenExpiry(http.User);
            _userId = workspace.UserId;
        }

        /// <returns>Why the server ends the stream; the loop only returns for that (the client leaving cancels it).</returns>
        public async Task<string?> RunAsync()
        {
            _http.Response.BodyWriter.Write(StreamEventFormatter.Ready(_cursor));
            await FlushAsync();
            var now = _clock.GetUtcNow();
            _nextHeartbeat = now + _options.HeartbeatInterval;
            _nextAccessCheck = now + _options.AccessCheckInterval;
            var retryReadAt = DateTimeOffset.MinValue;
            var readFailures = 0;

            while (true)
            {
                now = _clock.GetUtcNow();
                if (now >= _tokenExpiresAt) return EndReasons.TokenExpired;
                if (now >= _nextAccessCheck && await CheckAccessAsync() is { } refused) return refused;

                var changed = _feed.Changed; // before reading, so a change in between is not missed
                var slice = _feed.Read(_cursor, _options.BatchSize);
                var events = slice.Events;
                var seen = _cursor;
                if (slice.Behind && now >= retryReadAt)
                {
                    // Further back than the feed keeps (a resume, or a slow client): read the table directly.
                    try
                    {
                        var batch = await _database.ReadFromPrimaryAsync(_workspace.WorkspaceId, _cursor, _options.BatchSize, _cancellationToken);
                        events = batch.Rows.Select(_formatter.Format).ToList();
                        seen = batch.SeenUpTo(_options.BatchSize, _cursor);
                        readFailures = 0;
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        readFailures++;
                        var pause = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, Math.Min(readFailures - 1, 5))));
                        retryReadAt = now + pause;
                        LogCatchUpFailed(_logger, _workspace.Slug, e.GetType().Name, e.Message, pause.TotalSeconds);
                    }
                }

                var before = _cursor;
                if (events.Count > 0)
                {
                    if (await DeliverAsync(events) is { } denied) return denied;
                    _cursor = ActivityStreamPosition.Max(_cursor, events[^1].Position);
                }
                _cursor = ActivityStreamPosition.Max(_cursor, seen);
                if (_cursor > before) continue;

                // Nothing to send: keep the connection warm, then wait for the feed or the next deadline.
                now = _clock.GetUtcNow();
                if (now >= _nextHeartbeat)
                {
                    _http.Response.BodyWriter.Write(StreamEventFormatter.Heartbeat);
                    await FlushAsync();
                    _nextHeartbeat = now + _options.HeartbeatInterval;
                }
                var until = Min(Min(_nextHeartbeat, _nextAccessCheck), _tokenExpiresAt);
                if (slice.Behind) until = Min(until, retryReadAt > now ? retryReadAt : now + _options.PendingRetryDelay);
                var timeout = until - now;
                if (timeout < TimeSpan.FromMilliseconds(1)) timeout = TimeSpan.FromMilliseconds(1);
                try
                {
                    await changed.WaitAsync(timeout, _clock, _cancellationToken);
                }
                catch (TimeoutException)
                {
                    // A deadline: loop and act on it.
                }
            }
        }

        /// <summary>Writes events in order; before one that may change the caller's access, re-checks it first.</summary>
        private async Task<string?> DeliverAsync(IReadOnlyList<StreamEvent> events)
        {
            var written = 0;
            for (var i = 0; i < events.Count; i++)
            {
                if (events[i].ChangesAccessFor(_userId))
                {
                    if (i > written) await FlushAsync(events, written, i);
                    written = i;
                    if (await CheckAccessAsync() is { } refused) return refused;
                }
                _http.Response.BodyWriter.Write(events[i].Frame);
            }
            await FlushAsync(events, written, events.Count);
            _nextHeartbeat = _clock.GetUtcNow() + _options.HeartbeatInterval;
            return null;
        }

        private async Task FlushAsync(IReadOnlyList<StreamEvent> events, int from, int to)
        {
            await FlushAsync();
            var now = _clock.GetUtcNow();
            for (var i = from; i < to; i++) _metrics.Delivered(events[i].CreatedAt, now);
        }

        private async Task FlushAsync()
        {
            var result = await _http.Response.BodyWriter.FlushAsync(_cancellationToken);
            if (result.IsCanceled || result.IsCompleted) throw new OperationCanceledException("The client went away.");
        }

        /// <returns>Null while the caller may read on; otherwise the reason to end the stream.</returns>
        private async Task<string?> CheckAccessAsync()
        {
            _nextAccessCheck = _clock.GetUtcNow() + _options.AccessCheckInterval;
            try
            {
                return await _access.StillAllowedAsync(_http.User, _workspace.WorkspaceId, _cancellationToken) ? null : EndReasons.AccessRevoked;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Access cannot be confirmed (the database is unreachable): end rather than stream unchecked; the
                // client reconnects with Last-Event-ID and is checked afresh.
                LogAccessCheckFailed(_logger, _workspace.Slug, e.GetType().Name, e.Message);
                return EndReasons.Unavailable;
            }
        }
    }

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    /// <summary>The token's expiry (its exp claim); the stream ends then, and the client reconnects with a new token.</summary>
    private static DateTimeOffset TokenExpiry(ClaimsPrincipal user) =>
        long.TryParse(user.FindFirstValue("exp"), out var seconds) ? DateTimeOffset.FromUnixTimeSeconds(seconds) : DateTimeOffset.MaxValue;

    [LoggerMessage(EventId = 2121, Level = LogLevel.Information, Message = "Activity stream of workspace {Slug} ended by the server: {Reason}.")]
    private static partial void LogEnded(ILogger logger, string slug, string reason);

    [LoggerMessage(EventId = 2122, Level = LogLevel.Warning,
        Message = "Activity stream of workspace {Slug}: reading the table failed ({ErrorType}: {Error}); trying again in {Seconds:0.0} s.")]
    private static partial void LogCatchUpFailed(ILogger logger, string slug, string errorType, string error, double seconds);

    [LoggerMessage(EventId = 2123, Level = LogLevel.Warning,
        Message = "Activity stream of workspace {Slug}: access could not be checked ({ErrorType}: {Error}); ending the stream.")]
    private static partial void LogAccessCheckFailed(ILogger logger, string slug, string errorType, string error);
}
