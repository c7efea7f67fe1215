using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.Api.Events;

/// <summary>
/// The one LISTEN connection of this API instance, on the primary, outside every pool (its own physical connection
/// from <see cref="ActivityStreamDatabase.OpenPrimaryListenerConnectionAsync"/>). Each notification names workspaces
/// whose activity grew; it wakes their feeds (<see cref="WorkspaceActivityFeeds"/>), which read the rows from the
/// table. A lost connection is opened again with exponential backoff and jitter; once listening again, every feed is
/// woken, which reads whatever was committed while nobody listened.
/// </summary>
public sealed partial class ActivityNotificationListener(ActivityStreamDatabase database, WorkspaceActivityFeeds feeds,
    EventStreamMetrics metrics, IOptions<ActivityStreamOptions> options, ILogger<ActivityNotificationListener> logger) : BackgroundService
{
    private long _sessions;

    /// <summary>How many times a LISTEN session has been established (tests and diagnostics).</summary>
    public long Sessions => Interlocked.Read(ref _sessions);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var delay = settings.ListenerReconnectDelay;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await ListenAsync(settings, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                metrics.ListenerLost();
                var pause = Jitter(delay);
                LogListenerLost(logger, e.GetType().Name, e.Message, pause.TotalSeconds);
                try
                {
                    await Task.Delay(pause, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, settings.ListenerMaxReconnectDelay.Ticks));
                continue;
            }
        }
        metrics.ListenerLost();

        async Task ListenAsync(ActivityStreamOptions settings, CancellationToken cancellationToken)
        {
            await using var connection = await database.OpenPrimaryListenerConnectionAsync(cancellationToken);
            connection.Notification += (_, e) => feeds.Wake(e.Payload);
            await using (var listen = new NpgsqlCommand($"LISTEN {ActivityStreamDatabase.NotifyChannel}", connection))
            {
                await listen.ExecuteNonQueryAsync(cancellationToken);
            }
            metrics.ListenerConnected();
            var session = Interlocked.Increment(ref _sessions);
            LogListening(logger, session);
            delay = settings.ListenerReconnectDelay;
            // Fill the gap: rows committed before LISTEN took effect were never notified (after it, they will be).
            feeds.WakeAll();

            while (true)
            {
                if (!await connection.WaitAsync(settings.ListenerHealthCheckInterval, cancellationToken))
                {
                    // Quiet for a while: prove the connection is alive rather than wait on a dead socket.
                    await using var ping = new NpgsqlCommand("SELECT 1", connection);
                    await ping.ExecuteScalarAsync(cancellationToken);
                }
            }
        }
    }

    private static TimeSpan Jitter(TimeSpan delay) => delay * (0.75 + Random.Shared.NextDouble() * 0.5);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information,
        Message = "Activity stream: listening for notifications on the primary (session {Session}).")]
    private static partial void LogListening(ILogger logger, long session);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning,
        Message = "Activity stream: the LISTEN connection failed ({ErrorType}: {Error}); opening it again in {Seconds:0.0} s. Events are not lost: "
            + "the table is read again once listening.")]
    private static partial void LogListenerLost(ILogger logger, string errorType, string error, double seconds);
}
