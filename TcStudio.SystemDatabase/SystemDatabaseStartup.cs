using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly;
using Polly.Retry;
using Polly.Timeout;
using TcStudio.DatabaseTelemetry;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Waits at start until the system database answers, retrying with exponential backoff and jitter and logging each
/// attempt (server, database, user; never the password), and gives up after Database:StartupTimeout.
/// </summary>
public static class SystemDatabaseStartup
{
    /// <summary>How often <c>progress</c> hears that the wait goes on.</summary>
    public static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(5);

    /// <summary>
    /// True inside a probe whose failures are reported through <c>progress</c>: the connection log then keeps its
    /// per-attempt failure to Debug, so a console shows one line every few seconds rather than three per attempt.
    /// </summary>
    public static bool ReportsItsOwnFailures => NpgsqlActivityMonitor.CallerReportsFailures;

    /// <param name="databaseMayBeMissing">
    /// True for the worker: a reachable server without the database yet is enough, since migrating creates it.
    /// </param>
    /// <param name="progress">
    /// For a console (the worker): receives "waiting for PostgreSQL at host:port/db as user (12 s of 60 s): reason" at
    /// the first failed attempt and then every <see cref="ProgressInterval"/>; the per-attempt log lines go to Debug.
    /// Without it every attempt is logged (the API, whose logs are collected).
    /// </param>
    public static async Task WaitUntilReachableAsync(
        IConfiguration configuration, ILogger logger, bool databaseMayBeMissing, CancellationToken cancellationToken,
        Action<string>? progress = null)
    {
        var waiting = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan? lastProgress = null;
        var options = SystemDatabaseConnection.ReadOptions(configuration);
        var target = SystemDatabaseConnection.Build(configuration, "tcstudio-startup-check");
        target.Pooling = false;
        var where = SystemDatabaseConnection.Describe(target);
        var attempt = 0;

        var pipeline = new ResiliencePipelineBuilder()
            .AddTimeout(new TimeoutStrategyOptions { Timeout = options.StartupTimeout })
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsWorthRetrying),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(250),
                MaxDelay = TimeSpan.FromSeconds(5),
                MaxRetryAttempts = int.MaxValue,
                OnRetry = args =>
                {
                    if (progress is not null)
                    {
                        if (lastProgress is null || waiting.Elapsed - lastProgress >= ProgressInterval)
                        {
                            lastProgress = waiting.Elapsed;
                            progress($"waiting for PostgreSQL at {where} ({waiting.Elapsed.TotalSeconds:0} s of "
                                + $"{options.StartupTimeout.TotalSeconds:0} s): {Reason(args.Outcome.Exception)}");
                        }
                        logger.LogDebug("PostgreSQL at {Where} is not reachable yet (attempt {Attempt}): {Reason}; retrying in {Delay:0.0} s",
                            where, args.AttemptNumber + 1, Reason(args.Outcome.Exception), args.RetryDelay.TotalSeconds);
                        return ValueTask.CompletedTask;
                    }
                    logger.LogWarning("PostgreSQL at {Where} is not reachable yet (attempt {Attempt}): {Reason}; retrying in {Delay:0.0} s",
                        where, args.AttemptNumber + 1, Reason(args.Outcome.Exception), args.RetryDelay.TotalSeconds);
                    return ValueTask.CompletedTask;
                },
            })
            .Build();

        try
        {
            await pipeline.ExecuteAsync(async ct =>
            {
                attempt++;
                logger.Log(progress is null ? LogLevel.Information : LogLevel.Debug,
                    "Connecting to PostgreSQL at {Where} (attempt {Attempt})", where, attempt);
                NpgsqlActivityMonitor.CallerReportsFailures = progress is not null;
                await ProbeAsync(target, databaseMayBeMissing, ct);
            }, cancellationToken);
            logger.LogInformation("PostgreSQL at {Where} is reachable", where);
        }
        catch (TimeoutRejectedException)
        {
            throw new DatabaseUnavailableException(
                $"PostgreSQL at {where} did not become reachable within {options.StartupTimeout.TotalSeconds:0} s (Database:StartupTimeout).");
        }
        catch (PostgresException e) when (!IsWorthRetrying(e))
        {
            throw new DatabaseUnavailableException($"PostgreSQL at {where} refused the connection: {e.SqlState} {e.MessageText}");
        }
        catch (NpgsqlException e) when (PostgresTlsFailure.IsTlsFailure(e))
        {
            var reason = await PostgresTlsFailure.DescribeAsync(target, e, cancellationToken);
            throw new DatabaseUnavailableException($"PostgreSQL at {where}: TLS failed: {reason}");
        }
    }

    private static async Task ProbeAsync(NpgsqlConnectionStringBuilder target, bool databaseMayBeMissing, CancellationToken ct)
    {
        try
        {
            await using var connection = NpgsqlDataSources.CreateUnpooledConnection(NpgsqlDataSources.Startup, target);
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync(ct);
        }
        catch (PostgresException e) when (databaseMayBeMissing && e.SqlState == PostgresErrorCodes.InvalidCatalogName)
        {
            var server = new NpgsqlConnectionStringBuilder(target.ConnectionString) { Database = "postgres" };
            await using var connection = NpgsqlDataSources.CreateUnpooledConnection(NpgsqlDataSources.Startup, server);
            await connection.OpenAsync(ct);
        }
    }

    /// <summary>
    /// Wrong passwords, refused logins and certificates that fail verification do not fix themselves; everything else
    /// might (a server starting).
    /// </summary>
    private static bool IsWorthRetrying(Exception e) => e switch
    {
        NpgsqlException when PostgresTlsFailure.IsTlsFailure(e) => false,
        PostgresException pg => pg.SqlState is not (PostgresErrorCodes.InvalidPassword
            or PostgresErrorCodes.InvalidAuthorizationSpecification),
        OperationCanceledException => false,
        _ => true,
    };

    private static string Reason(Exception? e) => e switch
    {
        null => "unknown",
        PostgresException pg => $"{pg.SqlState} {pg.MessageText}",
        NpgsqlException { InnerException: { } inner } => inner.Message,
        _ => e.Message,
    };
}

/// <summary>The system database could not be reached at start; the message is the one line to print.</summary>
public sealed class DatabaseUnavailableException(string message) : Exception(message);
