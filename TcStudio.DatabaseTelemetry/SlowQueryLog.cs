namespace TcStudio.DatabaseTelemetry;

/// <summary>One command that took longer than the slow-query threshold. <see cref="Sql"/> never holds parameter values.</summary>
public sealed record SlowQuery(
    DateTimeOffset StartedAt,
    double DurationMs,
    string Sql,
    string OperationKind,
    string? Database,
    string Caller,
    bool Failed);

/// <summary>
/// The most recent slow queries of this process, newest first, for the insights API when pg_stat_statements is not
/// available. Bounded (Database:SlowQueryLogCapacity) so a storm of slow queries cannot grow memory.
/// </summary>
public sealed class SlowQueryLog(int capacity)
{
    private readonly SlowQuery?[] _entries = new SlowQuery?[Math.Max(1, capacity)];
    private readonly Lock _gate = new();
    private int _next;
    private long _total;

    public int Capacity => _entries.Length;

    /// <summary>Slow queries seen since start, including those no longer kept.</summary>
    public long Total => Interlocked.Read(ref _total);

    public void Add(SlowQuery query)
    {
        lock (_gate)
        {
            _entries[_next] = query;
            _next = (_next + 1) % _entries.Length;
            Interlocked.Increment(ref _total);
        }
    }

    /// <summary>The kept slow queries, newest first.</summary>
    public IReadOnlyList<SlowQuery> Snapshot()
    {
        lock (_gate)
        {
            var result = new List<SlowQuery>(_entries.Length);
            for (var k = 1; k <= _entries.Length; k++)
            {
                if (_entries[(_next - k + _entries.Length) % _entries.Length] is { } entry) result.Add(entry);
            }
            return result;
        }
    }
}
