using System.Diagnostics;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// Counts the SQL commands sent to one database (by name) while it is alive, from Npgsql's own activities, so
/// tests running in parallel against other databases do not disturb the count.
/// </summary>
public sealed class DatabaseCommandCounter : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly List<string> _commands = [];

    public DatabaseCommandCounter(string databaseName)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (!activity.TagObjects.Any(t => t.Value as string == databaseName)) return;
                // Physical connection opens are traced too; only commands carry their SQL.
                var text = activity.GetTagItem("db.query.text") as string ?? activity.GetTagItem("db.statement") as string;
                if (text is null) return;
                lock (_commands) _commands.Add(text);
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public IReadOnlyList<string> Commands
    {
        get { lock (_commands) return _commands.ToList(); }
    }

    public void Reset()
    {
        lock (_commands) _commands.Clear();
    }

    public void Dispose() => _listener.Dispose();
}
