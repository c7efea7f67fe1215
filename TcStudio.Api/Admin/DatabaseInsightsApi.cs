using TcStudio.Api.Auth;
using TcStudio.SystemDatabase.Insights;

namespace TcStudio.Api.Admin;

/// <summary>
/// PgHero-like insights into the system database, for system Admins: what the server is, how big it is and how fast
/// it grows, which queries are slow, which tables and indexes need care, and what is running long right now.
/// The figures come from PostgreSQL's own statistics views and the product's samples and metrics. The services
/// query through the data source directly (not EF), so each request is bounded here by
/// Database:RequestStatementTimeout: a catalog query stuck behind a lock (sizes of a locked table) answers 503.
/// </summary>
public static class DatabaseInsightsApi
{
    public static RouteGroupBuilder MapDatabaseInsightsApi(this RouteGroupBuilder api)
    {
        var insights = api.MapGroup("/admin/database").WithTags("Database insights")
            .RequireAuthorization(AuthenticationSetup.SystemAdminPolicy)
            .AddEndpointFilter(BoundByStatementTimeout);
        insights.MapGet("/overview", GetOverview)
            .WithSummary("Server version, size, growth over 24 h and 7 days, connections by state, pool figures, migrations.");
        insights.MapGet("/slow-queries", GetSlowQueries)
            .WithSummary("From pg_stat_statements when available, else the in-memory slow-query log; says which.");
        insights.MapGet("/tables", GetTables).WithSummary("Sizes, live and dead tuples, sequential and index scans.");
        insights.MapGet("/indexes", GetIndexes).WithSummary("Unused indexes and duplicate indexes (a prefix of another).");
        insights.MapGet("/long-running", GetLongRunning)
            .WithSummary("Queries running longer than a threshold (default from Database:LongRunningQueryThreshold).");
        return api;
    }

    public static async Task<Ok<DatabaseOverview>> GetOverview(OverviewInsights overview, CancellationToken cancellationToken) =>
        TypedResults.Ok(await overview.GetAsync(cancellationToken));

    public static async Task<Results<Ok<SlowQueryReport>, ValidationProblem>> GetSlowQueries(
        double? minMeanMs, int? limit, SlowQueryInsights slowQueries, CancellationToken cancellationToken)
    {
        var errors = new FieldErrors().Range("limit", limit, 1, 500).Finite("minMeanMs", minMeanMs);
        if (minMeanMs is < 0) errors.Add("minMeanMs", "'minMeanMs' must not be negative.");
        if (errors.Any) return errors.ToProblem();
        return TypedResults.Ok(await slowQueries.GetAsync(minMeanMs, limit ?? 20, cancellationToken));
    }

    public static async Task<Results<Ok<IReadOnlyList<TableStatistics>>, ValidationProblem>> GetTables(
        int? limit, TableInsights tables, CancellationToken cancellationToken)
    {
        if (new FieldErrors().Range("limit", limit, 1, 1000) is { Any: true } errors) return errors.ToProblem();
        return TypedResults.Ok(await tables.GetAsync(limit ?? 100, cancellationToken));
    }

    public static async Task<Ok<IndexReport>> GetIndexes(IndexInsights indexes, CancellationToken cancellationToken) =>
        TypedResults.Ok(await indexes.GetAsync(cancellationToken));

    public static async Task<Results<Ok<IReadOnlyList<LongRunningQuery>>, ValidationProblem>> GetLongRunning(
        double? thresholdSeconds, LongRunningQueryInsights longRunning, CancellationToken cancellationToken)
    {
        // NaN compares false with everything, so it must be named: "not in range" would let it through.
        if (thresholdSeconds is { } t && (!double.IsFinite(t) || t is < 0 or > 86_400))
        {
            return new FieldErrors().Add("thresholdSeconds", "'thresholdSeconds' must be between 0 and 86400.").ToProblem();
        }
        var threshold = thresholdSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : (TimeSpan?)null;
        return TypedResults.Ok(await longRunning.GetAsync(threshold, cancellationToken));
    }

    /// <summary>Cancels the request's database work once Database:RequestStatementTimeout has passed (Npgsql then cancels the query).</summary>
    private static async ValueTask<object?> BoundByStatementTimeout(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var limit = http.RequestServices.GetRequiredService<RequestTransactionSettings>().StatementTimeout;
        if (limit <= TimeSpan.Zero) return await next(context);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        bounded.CancelAfter(limit);
        // The handlers' CancellationToken was bound before filters run: hand them the bounded one instead.
        for (var i = 0; i < context.Arguments.Count; i++)
        {
            if (context.Arguments[i] is CancellationToken) context.Arguments[i] = bounded.Token;
        }
        return await next(context);
    }
}
