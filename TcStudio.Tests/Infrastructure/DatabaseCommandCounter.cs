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

    /// <param name="requestsOnly">
    /// Count only commands sent for an HTTP request (an ASP.NET Core request activity above them), leaving out what
    /// the API's background services send meanwhile (the event listener's ping, cleanups, the size sampler).
    /// </param>
    public DatabaseCommandCounter(string databaseName, bool requestsOnly = false)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (!activity.TagObjects.Any(t => t.Value as string == databaseName)) return;
                if (requestsOnly && !UnderRequest(activity)) return;
                // Physical connection opens are traced too; only commands carry their SQL.
                var text = activity.GetTagItem("db.query.text") as string ?? activity.GetTagItem("db.statement") as string;
                if (text is null) return;
                lock (_commands) _commands.Add(text);
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    private static bool UnderRequest(Activity activity)
    {
        for (var parent = activity.Parent; parent is not null; parent = parent.Parent)
        {
            if (parent.OperationName == "Microsoft.AspNetCore.Hosting.HttpRequestIn") return true;
        }
        return false;
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
