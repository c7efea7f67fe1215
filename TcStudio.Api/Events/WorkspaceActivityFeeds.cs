using System.Threading.Channels;
using Microsoft.Extensions.Options;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.Api.Events;

/// <summary>
/// The fan-out: one <see cref="WorkspaceFeed"/> per workspace that has open streams on this instance. A feed reads
/// new rows from the table once per wake-up and keeps the recent events, formatted, for all its streams; a thousand
/// streams of one workspace cost one read per change, not a thousand. Feeds come and go with their streams.
/// </summary>
public sealed partial class WorkspaceActivityFeeds(ActivityStreamDatabase database, StreamEventFormatter formatter,
    IOptions<ActivityStreamOptions> options, ILogger<WorkspaceActivityFeeds> logger) : IDisposable
{
    private readonly Dictionary<Guid, WorkspaceFeed> _feeds = [];

    public int OpenFeeds
    {
        get { lock (_feeds) return _feeds.Count; }
    }

    public FeedSubscription Subscribe(Guid workspaceId)
    {
        lock (_feeds)
        {
            if (!_feeds.TryGetValue(workspaceId, out var feed))
            {
                feed = _feeds[workspaceId] = new WorkspaceFeed(workspaceId, database, formatter, options.Value, logger);
                feed.Start();
            }
            feed.Subscribers++;
            return new FeedSubscription(this, feed);
        }
    }

    /// <summary>
    /// Where a new stream without Last-Event-ID may start when its workspace's feed is already running: the feed's
    /// head. Every activity committed from now on lies after it (its transaction was still running, or had no id yet,
    /// when the feed last read, so its xid is at or above that read's horizon); the stream may also get a few that
    /// committed just before it connected. Saves a round trip per connect when many streams watch one workspace.
    /// </summary>
    public bool TryGetLiveHead(Guid workspaceId, out ActivityStreamPosition head)
    {
        WorkspaceFeed? feed;
        lock (_feeds) _feeds.TryGetValue(workspaceId, out feed);
        head = default;
        return feed is not null && feed.TryGetHead(out head);
    }

    internal void Release(WorkspaceFeed feed)
    {
        lock (_feeds)
        {
            if (--feed.Subscribers > 0) return;
            _feeds.Remove(feed.WorkspaceId);
        }
        feed.Stop();
    }

    /// <summary>A notification's payload: workspace ids, comma-separated, or '*' (anything else wakes every feed).</summary>
    public void Wake(string payload)
    {
        if (payload == "*")
        {
            WakeAll();
            return;
        }
        foreach (var part in payload.Split(','))
        {
            if (!Guid.TryParse(part, out var workspaceId))
            {
                WakeAll();
                return;
            }
            WorkspaceFeed? feed;
            lock (_feeds) _feeds.TryGetValue(workspaceId, out feed);
            feed?.Wake();
        }
    }

    public void WakeAll()
    {
        WorkspaceFeed[] feeds;
        lock (_feeds) feeds = [.. _feeds.Values];
        foreach (var feed in feeds) feed.Wake();
    }

    public void Dispose()
    {
        WorkspaceFeed[] feeds;
        lock (_feeds)
        {
            feeds = [.. _feeds.Values];
            _feeds.Clear();
        }
        foreach (var feed in feeds) feed.Stop();
    }

    [LoggerMessage(EventId = 2111, Level = LogLevel.Warning,
        Message = "Activity stream: reading workspace {WorkspaceId} failed ({ErrorType}: {Error}); trying again in {Seconds:0.0} s.")]
    internal static partial void LogReadFailed(ILogger logger, Guid workspaceId, string errorType, string error, double seconds);
}

/// <summary>A stream's hold on its workspace's feed; disposing it lets the feed stop when no stream is left.</summary>
public sealed class FeedSubscription(WorkspaceActivityFeeds feeds, WorkspaceFeed feed) : IDisposable
{
    private int _disposed;

    public WorkspaceFeed Feed => feed;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) feeds.Release(feed);
    }
}

/// <param name="Behind">The position is older than the feed keeps (or the feed has not started): read the table.</param>
public readonly record struct FeedSlice(IReadOnlyList<StreamEvent> Events, bool Behind);

/// <summary>
/// One workspace's recent events and the loop that reads them: woken by a notification (or a timer), it reads the
/// rows after its head from the primary, appends them, and tells its streams. It holds every event in
/// (<c>_start</c>, <c>_head</c>], at most Events:BufferedEvents of them.
/// </summary>
public sealed class WorkspaceFeed
{
    private readonly ActivityStreamDatabase _database;
    private readonly StreamEventFormatter _formatter;
    private readonly ActivityStreamOptions _options;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly List<StreamEvent> _events = [];
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _changed = NewSignal();
    private ActivityStreamPosition _start;
    private ActivityStreamPosition _head;
    private bool _started;

    internal WorkspaceFeed(Guid workspaceId, ActivityStreamDatabase database, StreamEventFormatter formatter, ActivityStreamOptions options,
        ILogger logger)
    {
        WorkspaceId = workspaceId;
        _database = database;
        _formatter = formatter;
        _options = options;
        _logger = logger;
    }

    public Guid WorkspaceId { get; }

    /// <summary>Guarded by the owning <see cref="WorkspaceActivityFeeds"/>' lock.</summary>
    internal int Subscribers { get; set; }

    /// <summary>Completes at the next change (new events, or the feed's start). Take it before <see cref="Read"/>.</summary>
    public Task Changed
    {
        get { lock (_gate) return _changed.Task; }
    }

    public FeedSlice Read(ActivityStreamPosition after, int max)
    {
        lock (_gate)
        {
            if (!_started || after < _start) return new FeedSlice([], Behind: true);
            int low = 0, high = _events.Count;
            while (low < high)
            {
                var middle = (low + high) / 2;
                if (_events[middle].Position <= after) low = middle + 1;
                else high = middle;
            }
            return new FeedSlice(_events.GetRange(low, Math.Min(max, _events.Count - low)), Behind: false);
        }
    }

    public void Wake() => _wake.Writer.TryWrite(true);

    public bool TryGetHead(out ActivityStreamPosition head)
    {
        lock (_gate)
        {
            head = _head;
            return _started;
        }
    }

    internal void Start() => _ = Task.Run(RunAsync);

    internal void Stop() => _stop.Cancel();

    private async Task RunAsync()
    {
        var cancellationToken = _stop.Token;
        var pendingDelay = _options.PendingRetryDelay;
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan wait;
            try
            {
                if (!_started)
                {
                    // Start where the committed table ends now; streams that start earlier read the table themselves
                    // until they reach this point.
                    var horizon = await _database.ReadPrimaryHorizonAsync(cancellationToken);
                    Publish([], ActivityStreamPosition.Before(horizon), started: true);
                }
                var batch = await _database.ReadFromPrimaryAsync(WorkspaceId, _head, _options.BatchSize, cancellationToken);
                var head = batch.SeenUpTo(_options.BatchSize, _head);
                if (batch.Rows.Count > 0 || head != _head) Publish(batch.Rows.Select(_formatter.Format).ToList(), head, started: true);
                failures = 0;
                if (batch.Rows.Count == _options.BatchSize) continue; // more are waiting: read on at once
                if (batch.Pending)
                {
                    // Committed rows wait behind an older transaction that is still running; when it ends there may be
                    // no notification (it may not write activities), so look again soon.
                    wait = pendingDelay;
                    pendingDelay = TimeSpan.FromTicks(Math.Min(pendingDelay.Ticks * 2, _options.PendingMaxRetryDelay.Ticks));
                }
                else
                {
                    wait = _options.IdlePollInterval;
                    pendingDelay = _options.PendingRetryDelay;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                failures++;
                wait = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, Math.Min(failures - 1, 5))));
                WorkspaceActivityFeeds.LogReadFailed(_logger, WorkspaceId, e.GetType().Name, e.Message, wait.TotalSeconds);
            }

            using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timer.CancelAfter(wait);
            try
            {
                await _wake.Reader.ReadAsync(timer.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // The timer: read again.
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void Publish(List<StreamEvent> events, ActivityStreamPosition head, bool started)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            if (!_started)
            {
                _start = head;
                _started = started;
            }
            _events.AddRange(events);
            _head = ActivityStreamPosition.Max(_head, head);
            var excess = _events.Count - _options.BufferedEvents;
            if (excess > 0)
            {
                _start = _events[excess - 1].Position;
                _events.RemoveRange(0, excess);
            }
            changed = _changed;
            _changed = NewSignal();
        }
        changed.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
