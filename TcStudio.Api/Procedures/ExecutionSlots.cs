using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Api.Procedures;

/// <summary>
/// At most <see cref="WorkspaceLimits.ConcurrentExecutions"/> executions run at once per workspace (in this API
/// instance): one workspace's users cannot hold every connection and thread with slow routines. One more is refused at
/// once (429 with Retry-After), never queued, so a burst costs nothing but the refusal.
/// </summary>
public sealed class ExecutionSlots(IOptions<WorkspacesOptions> options)
{
    private readonly ConcurrentDictionary<Guid, int> _running = new();

    public int Limit => Math.Max(1, options.Value.Limits.ConcurrentExecutions);
    public int RetryAfterSeconds => Math.Max(1, options.Value.Limits.RetryAfterSeconds);

    /// <summary>A slot to dispose when the execution ends, or null when the workspace is at its limit.</summary>
    public IDisposable? TryEnter(Guid workspaceId)
    {
        var limit = Limit;
        while (true)
        {
            var current = _running.GetOrAdd(workspaceId, 0);
            if (current >= limit) return null;
            if (_running.TryUpdate(workspaceId, current + 1, current)) return new Slot(this, workspaceId);
        }
    }

    private void Leave(Guid workspaceId)
    {
        while (true)
        {
            var current = _running[workspaceId];
            if (current <= 1)
            {
                // The last one out removes the entry (only if nobody entered meanwhile), so idle workspaces cost nothing.
                if (_running.TryRemove(new KeyValuePair<Guid, int>(workspaceId, current))) return;
            }
            else if (_running.TryUpdate(workspaceId, current - 1, current))
            {
                return;
            }
        }
    }

    private sealed class Slot(ExecutionSlots owner, Guid workspaceId) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) owner.Leave(workspaceId);
        }
    }
}
