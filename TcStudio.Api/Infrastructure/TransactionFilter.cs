namespace TcStudio.Api.Infrastructure;

/// <summary>
/// For writes outside the workspace scope (users): runs the handler inside the execution strategy and one
/// transaction that commits only when the handler succeeds, as <see cref="Workspaces.WorkspaceScopeFilter"/> does for
/// workspace-scoped requests. Handlers that must check and then change (the last active Admin) lock rows in it and
/// never call BeginTransaction themselves. A POST's Idempotency-Key is claimed and recorded in the same transaction
/// (<see cref="IdempotentRequests"/>).
/// </summary>
public sealed class TransactionFilter(TcStudioDbContext db, IdempotentRequests idempotency) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var strategy = db.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async cancellationToken =>
        {
            db.ChangeTracker.Clear();
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            var result = await idempotency.RunAsync(context.HttpContext, inTransaction: true, () => next(context), cancellationToken);
            if (IsSuccess(result)) await transaction.CommitAsync(cancellationToken);
            else await transaction.RollbackAsync(cancellationToken);
            return result;
        }, context.HttpContext.RequestAborted);
    }

    internal static bool IsSuccess(object? result)
    {
        while (result is INestedHttpResult nested) result = nested.Result;
        return result is not IStatusCodeHttpResult { StatusCode: >= 400 };
    }
}

public static class TransactionFilterExtensions
{
    /// <summary>Runs the endpoint in one transaction (see <see cref="TransactionFilter"/>).</summary>
    public static RouteHandlerBuilder InTransaction(this RouteHandlerBuilder endpoint) =>
        endpoint.AddEndpointFilter<TransactionFilter>().SupportsIdempotencyKeys();
}
