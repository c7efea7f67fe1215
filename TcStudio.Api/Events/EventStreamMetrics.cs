using System.Diagnostics.Metrics;

namespace TcStudio.Api.Events;

/// <summary>
/// The live activity stream's instruments, on the meter <c>TcStudio.Events</c>. No workspace or user tags: their
/// number is unbounded and they are not for a metrics backend to keep.
/// </summary>
public sealed class EventStreamMetrics
{
    public const string MeterName = "TcStudio.Events";

    public const string OpenStreamsName = "tcstudio.events.open_streams";
    public const string DeliveryLagName = "tcstudio.events.delivery_lag";
    public const string DeliveredName = "tcstudio.events.delivered";
    public const string ListenerConnectedName = "tcstudio.events.listener.connected";
    public const string ListenerReconnectsName = "tcstudio.events.listener.reconnects";

    private static readonly double[] LagBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly UpDownCounter<long> _openStreams;
    private readonly Histogram<double> _deliveryLag;
    private readonly Counter<long> _delivered;
    private readonly Counter<long> _listenerReconnects;
    private volatile int _listenerConnected;

    public EventStreamMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _openStreams = meter.CreateUpDownCounter<long>(OpenStreamsName, "{stream}", "Event streams open on this instance.");
        _deliveryLag = meter.CreateHistogram(DeliveryLagName, "s",
            "Time from an activity's created_at to its event being written to a stream (includes the writing transaction's own duration).",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LagBuckets });
        _delivered = meter.CreateCounter<long>(DeliveredName, "{event}", "Activity events written to streams.");
        _listenerReconnects = meter.CreateCounter<long>(ListenerReconnectsName, "{connection}",
            "Times the LISTEN connection was lost and had to be opened again.");
        meter.CreateObservableGauge(ListenerConnectedName, () => _listenerConnected, "{connection}",
            "1 while this instance's LISTEN connection to the primary is up, else 0.");
    }

    public void StreamOpened() => _openStreams.Add(1);
    public void StreamClosed() => _openStreams.Add(-1);

    public void Delivered(DateTimeOffset createdAt, DateTimeOffset now)
    {
        _delivered.Add(1);
        _deliveryLag.Record(Math.Max(0, (now - createdAt).TotalSeconds));
    }

    public void ListenerConnected() => _listenerConnected = 1;

    public void ListenerLost()
    {
        if (_listenerConnected == 1) _listenerReconnects.Add(1);
        _listenerConnected = 0;
    }
}
