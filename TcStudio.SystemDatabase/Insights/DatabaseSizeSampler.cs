using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.Insights;

/// <summary>
/// Samples the system database's size (<c>pg_database_size</c>) and its largest tables into
/// <c>database_size_samples</c> at start and then every Database:SizeSampleInterval, deletes samples older than
/// Database:SizeSampleRetention, and feeds the <c>tcstudio.db.size</c> gauge. The growth figures of the insights
/// overview are differences between these samples. A failed sample (the database down, the schema not migrated yet)
/// is logged and retried sooner; it never stops the host.
/// </summary>
public sealed partial class DatabaseSizeSampler(
    IServiceScopeFactory scopes,
    DatabaseMetrics metrics,
    IOptionsMonitor<DatabaseOptions> options,
    TimeProvider clock,
    ILogger<DatabaseSizeSampler> logger) : BackgroundService
{
    public const int LargestTablesCount = 10;

    /// <summary>After a failure the next attempt comes after this (or the interval, if shorter), not a full interval later.</summary>
    public static readonly TimeSpan RetryAfterFailure = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var interval = options.CurrentValue.SizeSampleInterval;
            var next = interval;
            try
            {
                if (await SampleAsync(stoppingToken) is null) next = Min(interval, RetryAfterFailure);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                next = Min(interval, RetryAfterFailure);
                LogSampleFailed(logger, e.GetType().Name, OneLine(e), next.TotalSeconds);
            }

            try
            {
                await Task.Delay(next, clock, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Takes one sample and applies retention. Returns null (and stores nothing) while migrations are pending, since
    /// the table may not exist yet.
    /// </summary>
    public async Task<DatabaseSizeSample?> SampleAsync(CancellationToken cancellationToken = default)
    {
        await using var scope = scopes.CreateAsyncScope();
        var pending = await scope.ServiceProvider.GetRequiredService<SchemaReadiness>().GetPendingAsync(cancellationToken);
        if (pending.Count > 0)
        {
            LogWaitingForMigrations(logger, pending.Count);
            return null;
        }

        var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
        var dataSource = scope.ServiceProvider.GetRequiredService<NpgsqlDataSource>();
        string database;
        long bytes;
        List<object> largest;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            await using (var command = new NpgsqlCommand(
                "SELECT current_database(), pg_database_size(current_database())", connection))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                await reader.ReadAsync(cancellationToken);
                database = reader.GetString(0);
                bytes = reader.GetInt64(1);
            }
            largest = await CatalogQuery.ListAsync<object>(connection,
                """
                SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid)
                FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'm')
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg\_toast%'
                ORDER BY 2 DESC, 1
                LIMIT @limit
                """,
                r => new { table = r.GetString(0), bytes = r.GetInt64(1) },
                cancellationToken, new NpgsqlParameter("limit", LargestTablesCount));
        }

        var now = clock.GetUtcNow();
        var sample = new DatabaseSizeSample
        {
            SampledAt = now,
            DatabaseBytes = bytes,
            LargestTables = JsonSerializer.SerializeToDocument(largest),
        };
        db.DatabaseSizeSamples.Add(sample);
        await db.SaveChangesAsync(cancellationToken);

        var cutoff = now - options.CurrentValue.SizeSampleRetention;
        var deleted = await db.DatabaseSizeSamples.Where(s => s.SampledAt < cutoff).ExecuteDeleteAsync(cancellationToken);

        metrics.RecordDatabaseSize(database, bytes);
        LogSampled(logger, database, bytes, deleted);
        return sample;
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static string OneLine(Exception e) => e switch
    {
        PostgresException pg => $"{pg.SqlState} {pg.MessageText}",
        NpgsqlException { InnerException: { } inner } => inner.Message,
        _ => e.Message.ReplaceLineEndings(" "),
    };

    [LoggerMessage(EventId = 4101, Level = LogLevel.Debug,
        Message = "Database {Database} is {Bytes} bytes; {Deleted} expired size samples deleted")]
    private static partial void LogSampled(ILogger logger, string database, long bytes, int deleted);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Warning,
        Message = "Database size sample failed ({ErrorType}: {Reason}); next attempt in {RetrySeconds} s")]
    private static partial void LogSampleFailed(ILogger logger, string errorType, string reason, double retrySeconds);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Information,
        Message = "Database size sampling waits for {Pending} pending migrations")]
    private static partial void LogWaitingForMigrations(ILogger logger, int pending);
}
