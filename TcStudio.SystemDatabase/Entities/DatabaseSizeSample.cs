using System.Text.Json;

namespace TcStudio.SystemDatabase.Entities;

/// <summary>A periodic reading of the system database's size, for growth figures.</summary>
public sealed class DatabaseSizeSample
{
    public Guid Id { get; init; } = Guid.CreateVersion7();
    public DateTimeOffset SampledAt { get; set; }
    public long DatabaseBytes { get; set; }

    /// <summary>The largest tables at sampling time: [{ "table": "...", "bytes": n }, ...].</summary>
    public JsonDocument? LargestTables { get; set; }
}
