using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.DatabaseTelemetry;

namespace TcStudio.SystemDatabase;

/// <summary>
/// The system database's readiness check (named <c>TcStudioDbContext</c>, after the context, as Aspire names it): a
/// real round trip (<c>SELECT 1</c> through the service's own pool) within Database:HealthCheckTimeout, then "no
/// migrations pending". Descriptions are plain text without host names: /health is reachable without credentials.
/// A pool whose every connection is busy while requests wait is reported as such ("connection pool exhausted: N
/// waiting", Degraded: the server answers, this instance is saturated), never as "unreachable", and the check does
/// not queue behind those requests for a connection of its own.
/// </summary>
public sealed class SystemDatabaseHealthCheck(
    NpgsqlDataSource dataSource, SchemaReadiness schema, IOptionsMonitor<DatabaseOptions> options, IServiceProvider services) : IHealthCheck
{
    public const string Name = nameof(TcStudioDbContext);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        // Registered by the API (database insights); the worker has no pool worth watching.
        var pools = services.GetService<NpgsqlPoolMetrics>();
        if (pools?.FindExhaustion(SystemDatabaseConnection.ConnectionName) is { } busy) return Exhausted(busy);

        var timeout = options.CurrentValue.HealthCheckTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        var stopwatch = Stopwatch.StartNew();
        try
        {
            await using (var connection = await dataSource.OpenConnectionAsync(deadline.Token))
            await using (var command = new NpgsqlCommand("SELECT 1", connection))
            {
                await command.ExecuteScalarAsync(deadline.Token);
            }
            var roundTrip = stopwatch.Elapsed;

            var pending = await schema.GetPendingAsync(deadline.Token);
            if (pending.Count > 0)
            {
                return HealthCheckResult.Unhealthy($"migrations pending: {pending.Count}");
            }
            return HealthCheckResult.Healthy($"PostgreSQL answered in {roundTrip.TotalMilliseconds:0} ms");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            if (pools?.FindExhaustion(SystemDatabaseConnection.ConnectionName) is { } exhausted) return Exhausted(exhausted);
            return HealthCheckResult.Unhealthy($"PostgreSQL did not answer within {timeout.TotalSeconds:0.#} s");
        }
        catch (PostgresException e)
        {
            // 57P01-57P03: the server is shutting down or starting; its other sessions in the pool are gone too.
            if (e.SqlState.StartsWith("57P", StringComparison.Ordinal)) dataSource.Clear();
            return HealthCheckResult.Unhealthy($"PostgreSQL refused the round trip: {e.SqlState} {e.MessageText}");
        }
        catch (NpgsqlException e) when (e.InnerException is TimeoutException
            && pools?.FindExhaustion(SystemDatabaseConnection.ConnectionName) is { } exhausted)
        {
            // Waited the pool timeout for a connection: the server is fine, this instance's pool is not (and its
            // connections are alive, so the pool must not be cleared).
            return Exhausted(exhausted);
        }
        catch (NpgsqlException e)
        {
            // The server went away: idle connections in the pool are dead too. Dropping them now means the first
            // requests after the server returns get fresh connections instead of failing one by one.
            dataSource.Clear();
            return HealthCheckResult.Unhealthy(
                $"PostgreSQL is unreachable: {(e.InnerException is { } inner ? inner.Message : "connection failed")}");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Whatever else went wrong is reported by type only: messages may carry connection details.
            return HealthCheckResult.Unhealthy($"system database check failed: {e.GetType().Name}");
        }
    }

    private static HealthCheckResult Exhausted(PoolExhaustion exhaustion) =>
        HealthCheckResult.Degraded($"PostgreSQL is busy for this instance: {exhaustion}");
}
