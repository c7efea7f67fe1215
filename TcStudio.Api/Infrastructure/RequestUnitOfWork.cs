using System.Collections.Frozen;
using Microsoft.EntityFrameworkCore.Infrastructure;
using TcStudio.Api.Workspaces;

namespace TcStudio.Api.Infrastructure;

/// <summary>How far an endpoint's system-database transaction reaches (see <see cref="RequestUnitOfWork"/>).</summary>
public enum SystemTransactionScope
{
    /// <summary>
    /// Reads: every statement is its own implicit transaction and carries the request's settings (row-level security,
    /// timeouts) in the same batch, so a read costs no BEGIN/COMMIT round trips.
    /// </summary>
    Statement,

    /// <summary>Writes: one transaction around the whole request, committed only when the response is a success.</summary>
    Request,

    /// <summary>
    /// Routes that wait on a workspace database: no system connection or transaction is held while they wait (a
    /// hanging workspace must not drain the system pool), and each save is one transaction.
    /// </summary>
    Save,
}

/// <summary>Declares an endpoint's <see cref="SystemTransactionScope"/> when the default (by method) does not fit.</summary>
public sealed record SystemTransaction(SystemTransactionScope Scope);

/// <summary>
/// The one owner of every API request's system-database work: it picks the request's transaction scope (declared on
/// the endpoint, else by method: GET and HEAD per statement, everything else one transaction), runs the request inside
/// the execution strategy (a transient failure re-runs it whole, unless it waits on a workspace database: executing a
/// procedure twice is not a retry), and commits only a success. Inside it, <see cref="WorkspaceScopeFilter"/> checks
/// access and enters the workspace (the row-level-security setting), <see cref="IdempotencyFilter"/> claims the key,
/// and <see cref="RequestTransactionSettingsInterceptor"/> sends the settings with the first statement of each
/// transaction. Handlers never begin, commit or roll back; helpers that lock rows call
/// <see cref="RequestUnitOfWork.RequireTransaction"/>.
/// </summary>
public sealed class RequestUnitOfWork(TcStudioDbContext db, SystemDatabaseSources sources) : IEndpointFilter
{
    /// <summary>The reads that keep one connection for the whole request (see <see cref="InvokeAsync"/>).</summary>
    public static readonly FrozenSet<string> ConnectionHeldRoutes = new[]
    {
        "GET /api/workspaces/{slug}",
        "GET /api/workspaces/{slug}/procedures",
        "GET /api/workspaces/{slug}/activities",
    }.ToFrozenSet(StringComparer.Ordinal);

    public static SystemTransactionScope ScopeOf(HttpContext http) =>
        http.GetEndpoint()?.Metadata.GetMetadata<SystemTransaction>()?.Scope
        ?? (HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method)
            ? SystemTransactionScope.Statement
            : SystemTransactionScope.Request);

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var scope = ScopeOf(http);
        if (scope == SystemTransactionScope.Save)
        {
            db.ChangeTracker.Clear();
            return await next(context);
        }

        // The hot reads keep one pooled connection for the whole request. Left to EF, every query opens the connection
        // and closes it again, and each reopen makes Npgsql send its reset round (RESET ALL, DISCARD TEMP, …) in front
        // of the next statement: two or three per read. Only routes whose work is all on this DbContext: a route that
        // also takes a connection elsewhere (the token route's session and throttle, the event stream's horizon) would
        // hold two from the same pool, and with the pool exhausted every request would wait for its second one. A
        // standby-routed read gets its connection from ReadRouting, which runs inside this filter: left to EF there.
        var holdConnection = scope == SystemTransactionScope.Statement
            && ReadRouting.CachedKeyOf(http.GetEndpoint(), http.Request.Method) is { } route && ConnectionHeldRoutes.Contains(route)
            && (!sources.HasStandbys || !ReadRouting.IsStandbyRoute(http.GetEndpoint(), http.Request.Method));
        var strategy = db.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async cancellationToken =>
        {
            db.ChangeTracker.Clear();
            if (holdConnection) await db.Database.OpenConnectionAsync(cancellationToken);
            try
            {
                await using var transaction = scope == SystemTransactionScope.Request ? await db.Database.BeginTransactionAsync(cancellationToken)
                    : null;
                // No savepoint around each SaveChanges in the request's transaction: EF would send SAVEPOINT and RELEASE,
                // two round trips per save, so that a failed save could be recovered from inside the transaction. Nothing
                // here does that: a failure fails the request, and its transaction is rolled back whole (below). The pooled
                // context gets the default back at the end (Save-scope routes manage transactions of their own).
                db.Database.AutoSavepointsEnabled = transaction is null;
                var result = await next(context);
                if (transaction is not null)
                {
                    if (ConditionalRequestFilter.IsSuccess(result)) await transaction.CommitAsync(cancellationToken);
                    else await transaction.RollbackAsync(cancellationToken);
                }
                return result;
            }
            finally
            {
                db.Database.AutoSavepointsEnabled = true;
                if (holdConnection) await db.Database.CloseConnectionAsync();
            }
        }, http.RequestAborted);
    }

    /// <summary>
    /// For helpers whose correctness rests on the request's transaction (row locks, transaction-level advisory locks:
    /// they last only as long as it). Outside one they would lock nothing: fail loudly instead.
    /// </summary>
    public static void RequireTransaction(DatabaseFacade database, string purpose)
    {
        if (database.CurrentTransaction is null)
        {
            throw new InvalidOperationException(
                $"{purpose} needs the request's transaction (SystemTransactionScope.Request), but none is open: declare the endpoint's scope.");
        }
    }
}

/// <summary>Claims and records a POST's Idempotency-Key (<see cref="IdempotentRequests"/>) after access is checked.</summary>
public sealed class IdempotencyFilter(TcStudioDbContext db, IdempotentRequests idempotency) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next) =>
        await idempotency.RunAsync(context.HttpContext, inTransaction: db.Database.CurrentTransaction is not null, () => next(context),
            context.HttpContext.RequestAborted);
}

public static class RequestUnitOfWorkExtensions
{
    /// <summary>POSTs here honour Idempotency-Key (<see cref="IdempotencyFilter"/>).</summary>
    /// <remarks>
    /// Only a POST reaches the filter (built from the request's services then); any other request goes straight on,
    /// without resolving it or an async frame of its own.
    /// </remarks>
    public static TBuilder SupportsIdempotencyKeys<TBuilder>(this TBuilder endpoint) where TBuilder : IEndpointConventionBuilder =>
        endpoint.WithMetadata(new SupportsIdempotencyKeys()).AddEndpointFilterFactory((factory, next) =>
        {
            var create = ActivatorUtilities.CreateFactory<IdempotencyFilter>([]);
            return context => HttpMethods.IsPost(context.HttpContext.Request.Method)
                ? create(context.HttpContext.RequestServices, []).InvokeAsync(context, next)
                : next(context);
        });

    /// <summary>Declares the endpoint's <see cref="SystemTransactionScope"/> (instead of the default by method).</summary>
    public static TBuilder WithSystemTransaction<TBuilder>(this TBuilder endpoint,
        SystemTransactionScope scope) where TBuilder : IEndpointConventionBuilder =>
        endpoint.WithMetadata(new SystemTransaction(scope));

    /// <summary>See <see cref="SystemTransactionScope.Save"/>.</summary>
    public static TBuilder WaitsOnWorkspaceDatabase<TBuilder>(this TBuilder endpoint) where TBuilder : IEndpointConventionBuilder =>
        endpoint.WithSystemTransaction(SystemTransactionScope.Save);
}
