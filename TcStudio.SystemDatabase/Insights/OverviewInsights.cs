using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.DatabaseTelemetry;

namespace TcStudio.SystemDatabase.Insights;

/// <summary>The database at a glance: for <c>GET /api/admin/database/overview</c>.</summary>
public sealed record DatabaseOverview(
    string Database,
    string ServerVersion,
    long SizeBytes,
    DatabaseGrowth? GrowthLast24Hours,
    DatabaseGrowth? GrowthLast7Days,
    DateTimeOffset? LastSampledAt,
    IReadOnlyList<ConnectionStateCount> Connections,
    IReadOnlyList<ConnectionPoolFigures> Pools,
    MigrationSummary Migrations);

/// <summary>
/// Size change between two samples. <see cref="From"/> is the newest sample at least the window old; when the
/// samples do not reach that far back, the oldest one, so the span can be shorter than the window's name says.
/// </summary>
public sealed record DatabaseGrowth(long Bytes, DateTimeOffset From, DateTimeOffset To);

/// <summary>Sessions on this database by pg_stat_activity state (active, idle, idle in transaction, …).</summary>
public sealed record ConnectionStateCount(string State, int Count);

public sealed record MigrationSummary(int Applied, int Pending, string? LastApplied, IReadOnlyList<string> PendingMigrations);

/// <summary>
/// Gathers the overview: server version, live size, growth from the size samples, sessions by state, this
/// service's pool figures (from Npgsql's metrics) and migrations applied and pending.
/// </summary>
public sealed class OverviewInsights(TcStudioDbContext db, NpgsqlDataSource dataSource, NpgsqlPoolMetrics pools)
{
    public async Task<DatabaseOverview> GetAsync(CancellationToken cancellationToken = default)
    {
        string database, version;
        long size;
        List<ConnectionStateCount> connections;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            (database, version, size) = (await CatalogQuery.ListAsync(connection,
                "SELECT current_database(), current_setting('server_version'), pg_database_size(current_database())",
                r => (r.GetString(0), r.GetString(1), r.GetInt64(2)), cancellationToken))[0];
            connections = await CatalogQuery.ListAsync(connection,
                """
                SELECT coalesce(state, 'unknown'), count(*)::int
                FROM pg_stat_activity
                WHERE datname = current_database() AND backend_type = 'client backend'
                GROUP BY 1
                ORDER BY 1
                """,
                r => new ConnectionStateCount(r.GetString(0), r.GetInt32(1)), cancellationToken);
        }

        var samples = db.DatabaseSizeSamples.AsNoTracking();
        var latest = await samples.OrderByDescending(s => s.SampledAt)
            .Select(s => new SizePoint(s.SampledAt, s.DatabaseBytes)).FirstOrDefaultAsync(cancellationToken);
        var growthDay = latest is null ? null : await GrowthAsync(latest, TimeSpan.FromDays(1), cancellationToken);
        var growthWeek = latest is null ? null : await GrowthAsync(latest, TimeSpan.FromDays(7), cancellationToken);

        var known = db.Database.GetMigrations().ToList();
        var applied = (await db.Database.GetAppliedMigrationsAsync(cancellationToken)).ToList();
        var pending = known.Except(applied).ToList();

        return new DatabaseOverview(database, version, size, growthDay, growthWeek, latest?.At, connections,
            pools.Read(SystemDatabaseConnection.ConnectionName),
            new MigrationSummary(applied.Count, pending.Count, applied.LastOrDefault(), pending));
    }

    private async Task<DatabaseGrowth?> GrowthAsync(SizePoint latest, TimeSpan window, CancellationToken cancellationToken)
    {
        var samples = db.DatabaseSizeSamples.AsNoTracking();
        var windowStart = latest.At - window;
        var baseline = await samples.Where(s => s.SampledAt <= windowStart).OrderByDescending(s => s.SampledAt)
                .Select(s => new SizePoint(s.SampledAt, s.DatabaseBytes)).FirstOrDefaultAsync(cancellationToken)
            ?? await samples.Where(s => s.SampledAt < latest.At).OrderBy(s => s.SampledAt)
                .Select(s => new SizePoint(s.SampledAt, s.DatabaseBytes)).FirstOrDefaultAsync(cancellationToken);
        return baseline is null ? null : new DatabaseGrowth(latest.Bytes - baseline.Bytes, baseline.At, latest.At);
    }

    private sealed record SizePoint(DateTimeOffset At, long Bytes);
}
