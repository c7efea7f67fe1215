using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace TcStudio.Tests.Observability.Support;

public sealed record RecordedMeasurement(string Instrument, string? Unit, double Value, IReadOnlyDictionary<string, object?> Tags)
{
    public string? Tag(string key) => Tags.TryGetValue(key, out var value) ? value?.ToString() : null;
}

/// <summary>
/// A MeterListener that records every measurement of the instruments it is told to watch, the way an exporter
/// would see them. Observable instruments report when <see cref="Observe"/> is called.
/// </summary>
public sealed class MeasurementRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<RecordedMeasurement> _measurements = new();

    public MeasurementRecorder(Func<Instrument, bool> watch)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (watch(instrument)) listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<int>((i, v, t, _) => Add(i, v, t));
        _listener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i, v, t));
        _listener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i, v, t));
        _listener.Start();
    }

    public IReadOnlyList<RecordedMeasurement> All => _measurements.ToArray();

    public IReadOnlyList<RecordedMeasurement> Of(string instrument) => All.Where(m => m.Instrument == instrument).ToList();

    /// <summary>Asks observable instruments (gauges, observable counters) to report now.</summary>
    public void Observe() => _listener.RecordObservableInstruments();

    public void Dispose() => _listener.Dispose();

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var copy = new Dictionary<string, object?>();
        foreach (var tag in tags) copy[tag.Key] = tag.Value;
        _measurements.Enqueue(new RecordedMeasurement(instrument.Name, instrument.Unit, value, copy));
    }
}
