namespace TcStudio.SystemDatabase.Activities;

/// <summary>The configuration section <c>Events</c>: the live activity stream (GET /api/workspaces/{slug}/events).</summary>
public sealed class ActivityStreamOptions
{
    public const string SectionName = "Events";

    /// <summary>A comment line sent on an idle stream so proxies and load balancers keep it open.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How often an open stream re-checks its caller: token not revoked (through the session cache, see
    /// Auth:SessionCheckInterval), still a member with read access, workspace not deleted. Removals recorded in the
    /// workspace's activity are acted on at once; this bounds everything else.
    /// </summary>
    public TimeSpan AccessCheckInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>First pause before re-opening a lost listening connection; doubles (with jitter) up to the maximum.</summary>
    public TimeSpan ListenerReconnectDelay { get; set; } = TimeSpan.FromSeconds(1);

    public TimeSpan ListenerMaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>After this long without a notification the listener proves its connection alive with a round trip.</summary>
    public TimeSpan ListenerHealthCheckInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// First pause before re-reading a workspace whose committed rows are held back by an older transaction that is
    /// still running (see README, "Live events"); doubles up to <see cref="PendingMaxRetryDelay"/>.
    /// </summary>
    public TimeSpan PendingRetryDelay { get; set; } = TimeSpan.FromMilliseconds(20);

    public TimeSpan PendingMaxRetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Each workspace with open streams is re-read this often even without a notification (belt and braces).</summary>
    public TimeSpan IdlePollInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Rows per read of the table.</summary>
    public int BatchSize { get; set; } = 500;

    /// <summary>Recent events kept in memory per workspace; a stream further behind reads from the table itself.</summary>
    public int BufferedEvents { get; set; } = 1000;

    /// <summary>Connections to the primary for the stream's reads (their own small pool, separate from requests').</summary>
    public int MaxReadConnections { get; set; } = 4;

    /// <summary>One line naming the first invalid setting, or null.</summary>
    public string? Validate()
    {
        foreach (var (name, value) in new[]
                 {
                     (nameof(HeartbeatInterval), HeartbeatInterval), (nameof(AccessCheckInterval), AccessCheckInterval),
                     (nameof(ListenerReconnectDelay), ListenerReconnectDelay), (nameof(ListenerMaxReconnectDelay), ListenerMaxReconnectDelay),
                     (nameof(ListenerHealthCheckInterval), ListenerHealthCheckInterval), (nameof(PendingRetryDelay), PendingRetryDelay),
                     (nameof(PendingMaxRetryDelay), PendingMaxRetryDelay), (nameof(IdlePollInterval), IdlePollInterval),
                 })
        {
            if (value <= TimeSpan.Zero) return $"{SectionName}:{name} must be a positive duration (hh:mm:ss).";
        }
        if (ListenerMaxReconnectDelay < ListenerReconnectDelay)
        {
            return $"{SectionName}:ListenerMaxReconnectDelay is shorter than ListenerReconnectDelay.";
        }
        if (PendingMaxRetryDelay < PendingRetryDelay) return $"{SectionName}:PendingMaxRetryDelay is shorter than PendingRetryDelay.";
        if (BatchSize is < 1 or > 10_000) return $"{SectionName}:BatchSize must be between 1 and 10000.";
        if (BufferedEvents is < 1 or > 1_000_000) return $"{SectionName}:BufferedEvents must be between 1 and 1000000.";
        if (MaxReadConnections is < 1 or > 100) return $"{SectionName}:MaxReadConnections must be between 1 and 100.";
        return null;
    }
}

/// <summary>Checks <see cref="ActivityStreamOptions"/> at start (with ValidateOnStart), naming the first bad setting.</summary>
public sealed class ActivityStreamOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<ActivityStreamOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, ActivityStreamOptions options) =>
        options.Validate() is { } error
            ? Microsoft.Extensions.Options.ValidateOptionsResult.Fail(error)
            : Microsoft.Extensions.Options.ValidateOptionsResult.Success;
}
