using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using Npgsql.EntityFrameworkCore.PostgreSQL;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Npgsql's retrying strategy, minus the failures where a retry only multiplies the wait: a lock that did not come
/// free within <c>lock_timeout</c> (55P03), a statement stopped by <c>statement_timeout</c> or a cancel (57014), and any
/// timeout on the client side (a full pool, a command or a connection attempt that ran out of time). Npgsql counts
/// those as transient, so the default strategy ran a blocked request four times over its whole timeout before
/// answering. Dropped connections, a restarting server, deadlocks and serialization failures are still retried.
/// </summary>
public sealed class TcStudioExecutionStrategy(ExecutionStrategyDependencies dependencies, int maxRetryCount, TimeSpan maxRetryDelay)
    : NpgsqlRetryingExecutionStrategy(dependencies, maxRetryCount, maxRetryDelay, errorCodesToAdd: null)
{
    protected override bool ShouldRetryOn(Exception? exception) =>
        !IsTimeout(exception) && base.ShouldRetryOn(exception);

    /// <summary>True for the failures that mean "waited as long as allowed"; see the class summary.</summary>
    public static bool IsTimeout(Exception? exception) => exception switch
    {
        PostgresException { SqlState: PostgresErrorCodes.LockNotAvailable or PostgresErrorCodes.QueryCanceled } => true,
        NpgsqlException { InnerException: TimeoutException } => true,
        TimeoutException => true,
        _ => false,
    };
}
