using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Whether the system database has every migration this build knows. After a deploy the worker may still be
/// migrating: until it is done, /health says "migrations pending" and data endpoints answer 503. Once ready, the
/// answer is cached (migrations are never un-applied under a running service); until then it is re-checked at most
/// once per <see cref="RecheckInterval"/>.
/// </summary>
public sealed class SchemaReadiness(IServiceScopeFactory scopes, TimeProvider clock)
{
    public static readonly TimeSpan RecheckInterval = TimeSpan.FromSeconds(2);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile bool _ready;
    private DateTimeOffset _checkedAt = DateTimeOffset.MinValue;
    private IReadOnlyList<string> _pending = [];

    public bool IsReady => _ready;

    /// <summary>The migrations the database lacks (empty when ready). Throws when the database cannot be reached.</summary>
    public async Task<IReadOnlyList<string>> GetPendingAsync(CancellationToken cancellationToken = default)
    {
        if (_ready) return [];
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_ready || clock.GetUtcNow() - _checkedAt < RecheckInterval) return _pending;
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
            _pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
            _checkedAt = clock.GetUtcNow();
            _ready = _pending.Count == 0;
            return _pending;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Marks the schema current (after this process migrated it itself).</summary>
    public void MarkReady()
    {
        _pending = [];
        _ready = true;
    }
}
