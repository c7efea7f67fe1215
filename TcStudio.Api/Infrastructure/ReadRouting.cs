using System.Collections.Frozen;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Which API routes read from a standby: the one place that says it. Only reads that tolerate a little replication
/// lag (lists, search, activity pages) and write nothing (a standby is read-only: no activity rows, no idempotency
/// records; these are GETs). Everything else uses the primary: writes; reads that must see the caller's own writes
/// (a GET of one workspace, procedure or member right after changing it; the session check of every token); the
/// live event stream (its LISTEN and gap-filling reads, <c>ActivityStreamDatabase</c>); the database insights
/// (a standby's statistics views describe the standby, not the primary, and lack the primary's activity).
/// With one host configured, or no standby answering, the standby route is the primary (<see cref="SystemDatabaseSources"/>).
/// </summary>
public static class ReadRouting
{
    /// <summary>"METHOD route pattern" (without a trailing slash) of every route whose reads go to a standby.</summary>
    public static readonly FrozenSet<string> StandbyRoutes = new[]
    {
        "GET /api/workspaces",                        // the caller's workspaces
        "GET /api/workspaces/{slug}/activities",      // activity pages
        "GET /api/workspaces/{slug}/procedures",      // procedure list and search
        "GET /api/workspaces/{slug}/members",         // member list
        "GET /api/users",                             // user list (system Admin)
    }.ToFrozenSet(StringComparer.Ordinal);

    public static string? KeyOf(Endpoint? endpoint, string method) =>
        endpoint is RouteEndpoint { RoutePattern.RawText: { } pattern } ? $"{method} {pattern.TrimEnd('/')}" : null;

    /// <summary>
    /// <see cref="KeyOf"/> remembered per endpoint and method: asked on every request (here and by
    /// <see cref="RequestUnitOfWork"/>), it would otherwise build the same string each time.
    /// </summary>
    internal static string? CachedKeyOf(Endpoint? endpoint, string method) =>
        endpoint is null ? null : Keys.GetOrAdd((endpoint, method), static k => KeyOf(k.Endpoint, k.Method));

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(Endpoint Endpoint, string Method), string?> Keys = new();

    public static bool IsStandbyRoute(Endpoint? endpoint, string method) =>
        CachedKeyOf(endpoint, method) is { } key && StandbyRoutes.Contains(key);

    /// <summary>
    /// Runs the endpoints of standby routes with the request's DbContext on a connection from the standby data source,
    /// and gives the context its primary connection back when the endpoint is done (a pooled context keeps its
    /// connection object from one request to the next). A filter on the outermost group, so it runs before the
    /// workspace scope's access check (which then reads from the standby too) and after authentication (whose
    /// session check stays on the primary: a revoked token must be refused at once). The request's settings
    /// (timeouts, row-level security) are applied per statement as on the primary: <c>set_config(…, true)</c> is
    /// allowed on a standby.
    /// </summary>
    public static RouteGroupBuilder WithReadRouting(this RouteGroupBuilder api) => api.AddEndpointFilterFactory((factory, next) =>
    {
        // A primary-only request goes straight on: no async frame of this filter's own.
        var sources = factory.ApplicationServices.GetRequiredService<SystemDatabaseSources>();
        return context =>
        {
            var http = context.HttpContext;
            return sources.HasStandbys && IsStandbyRoute(http.GetEndpoint(), http.Request.Method) ? OnStandbyAsync(context, next, sources)
                : next(context);
        };
    });

    private static async ValueTask<object?> OnStandbyAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next,
        SystemDatabaseSources sources)
    {
        var http = context.HttpContext;
        var db = http.RequestServices.GetRequiredService<TcStudioDbContext>();
        db.Database.SetDbConnection(sources.Standby.CreateConnection(), contextOwnsConnection: true);
        try
        {
            return await next(context);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
            // Disposes the standby connection; the next use creates one from the (primary) data source again.
            db.Database.SetDbConnection(null, contextOwnsConnection: false);
        }
    }
}
