using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.SystemDatabase.Insights;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>
/// The services behind GET /api/admin/database/...: each returns real figures from a database seeded with known
/// data (tables, indexes, samples, a running query).
/// </summary>
public sealed class DatabaseInsightsTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task The_overview_has_version_size_growth_from_samples_sessions_pool_figures_and_migrations()
    {
        var now = DateTimeOffset.UtcNow;
        now = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, now.Minute, now.Second, TimeSpan.Zero);
        await using (var db = database.CreateDbContext())
        {
            db.DatabaseSizeSamples.AddRange(
                new DatabaseSizeSample { SampledAt = now.AddDays(-8), DatabaseBytes = 1_000 },
                new DatabaseSizeSample { SampledAt = now.AddDays(-3), DatabaseBytes = 6_000 },
                new DatabaseSizeSample { SampledAt = now.AddHours(-25), DatabaseBytes = 5_000 },
                new DatabaseSizeSample { SampledAt = now.AddHours(-1), DatabaseBytes = 7_000 });
            await db.SaveChangesAsync();
        }
        using var host = DataHost.Build(database.ConnectionString);

        var overview = await host.InScopeAsync((OverviewInsights insights) => insights.GetAsync());

        Assert.Equal(database.DatabaseName, overview.Database);
        Assert.Matches(@"^\d+(\.\d+)?", overview.ServerVersion);
        var size = await database.ScalarAsync<long>("SELECT pg_database_size(current_database())");
        Assert.InRange(overview.SizeBytes, size * 9 / 10, size * 11 / 10);
        Assert.Equal(new DatabaseGrowth(2_000, now.AddHours(-25), now.AddHours(-1)), overview.GrowthLast24Hours);
        Assert.Equal(new DatabaseGrowth(6_000, now.AddDays(-8), now.AddHours(-1)), overview.GrowthLast7Days);
        Assert.Equal(now.AddHours(-1), overview.LastSampledAt);
        Assert.Contains(overview.Connections, c => c.State == "active" && c.Count >= 1); // this query's own session
        var pool = Assert.Single(overview.Pools);
        Assert.Equal(SystemDatabaseConnection.ConnectionName, pool.Name);
        Assert.True(pool.Max >= 10 && pool.Idle + pool.Used >= 1, pool.ToString());
        await using (var db = database.CreateDbContext())
        {
            var migrations = db.Database.GetMigrations().ToList();
            Assert.Equal(new MigrationSummary(migrations.Count, 0, migrations[^1], []), overview.Migrations with { PendingMigrations = [] });
            Assert.Empty(overview.Migrations.PendingMigrations);
        }
    }

    [Fact]
    public async Task Growth_is_absent_with_a_single_sample_and_spans_what_there_is_with_a_short_history()
    {
        var fresh = await database.Server.CreateDatabaseAsync();
        try
        {
            var connectionString = database.Server.ConnectionString(fresh);
            using var host = DataHost.Build(connectionString);
            var sampler = host.Services.GetRequiredService<DatabaseSizeSampler>();

            var first = await sampler.SampleAsync();
            var one = await host.InScopeAsync((OverviewInsights insights) => insights.GetAsync());
            Assert.Null(one.GrowthLast24Hours);
            Assert.Null(one.GrowthLast7Days);

            await NonPooledExecuteAsync(connectionString,
                "CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS filler FROM generate_series(1, 20000) g");
            var second = await sampler.SampleAsync();
            var two = await host.InScopeAsync((OverviewInsights insights) => insights.GetAsync());
            var expected = new DatabaseGrowth(second!.DatabaseBytes - first!.DatabaseBytes, Truncate(first.SampledAt), Truncate(second.SampledAt));
            Assert.Equal(expected, two.GrowthLast24Hours);
            Assert.Equal(expected, two.GrowthLast7Days);
            Assert.True(expected.Bytes > 4_000_000, expected.ToString());
        }
        finally
        {
            await database.Server.DropDatabaseAsync(fresh);
        }
    }

    [Fact]
    public async Task Slow_queries_come_from_pg_stat_statements_when_the_server_has_it()
    {
        // pg_stat_statements groups statements by their normalised parse tree (aliases and constants do not count),
        // so this test's statement calls a function of its own.
        var marker = $"slow_{Guid.NewGuid():N}";
        await NonPooledExecuteAsync(database.ConnectionString,
            $"CREATE FUNCTION {marker}(seconds float8) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(seconds)'");
        await NonPooledExecuteAsync(database.ConnectionString, $"SELECT {marker}(0.15)");
        await NonPooledExecuteAsync(database.ConnectionString, $"SELECT {marker}(0.16)");
        var preloaded = (await database.ScalarAsync<string>("SELECT current_setting('shared_preload_libraries')")).Contains("pg_stat_statements");
        using var host = DataHost.Build(database.ConnectionString);

        var report = await host.InScopeAsync((SlowQueryInsights insights) => insights.GetAsync(minMeanMs: 100));

        if (!preloaded)
        {
            // A server configured elsewhere (TCSTUDIO_TEST_POSTGRES) without the library: the fallback answers.
            Assert.Equal(SlowQueryInsights.InMemorySource, report.Source);
            return;
        }
        Assert.Equal(SlowQueryInsights.StatStatementsSource, report.Source);
        Assert.Equal(100, report.MinMeanMs);
        var statement = Assert.Single(report.Queries, q => q.Query.StartsWith("SELECT " + marker));
        Assert.Equal($"SELECT {marker}($1)", statement.Query); // normalised: no constants
        Assert.Equal(2, statement.Calls);
        Assert.InRange(statement.MeanMs, 150, 1_000);
        Assert.InRange(statement.TotalMs, 310, 2_000);
        Assert.Equal(1, await database.ScalarAsync<int>("SELECT count(*)::int FROM pg_extension WHERE extname = 'pg_stat_statements'"));
    }

    [Fact]
    public async Task Without_pg_stat_statements_slow_queries_come_from_the_in_memory_log_of_this_database_only()
    {
        var fresh = await database.Server.CreateDatabaseAsync();
        try
        {
            var connectionString = database.Server.ConnectionString(fresh);
            // The migrations create it where the migrating role may (the tests migrate as a superuser): take it away.
            await NonPooledExecuteAsync(connectionString, "DROP EXTENSION IF EXISTS pg_stat_statements");
            using var host = DataHost.Build(connectionString, settings: new Dictionary<string, string?>
            {
                ["Database:CreateStatStatementsExtension"] = "false",
                ["Database:SlowQueryThreshold"] = "00:00:00.100",
            });
            host.Services.GetRequiredService<NpgsqlActivityMonitor>().Start();
            var here = $"here_{Guid.NewGuid():N}";
            var elsewhere = $"elsewhere_{Guid.NewGuid():N}";
            for (var i = 0; i < 2; i++) await NonPooledExecuteAsync(connectionString, $"SELECT pg_sleep(0.12) AS {here}");
            await NonPooledExecuteAsync(database.ConnectionString, $"SELECT pg_sleep(0.12) AS {elsewhere}");

            var report = await host.InScopeAsync((SlowQueryInsights insights) => insights.GetAsync());

            Assert.Equal(SlowQueryInsights.InMemorySource, report.Source);
            Assert.Equal(100, report.MinMeanMs);
            var statement = Assert.Single(report.Queries, q => q.Query.Contains(here));
            Assert.Equal(2, statement.Calls);
            Assert.InRange(statement.MeanMs, 120, 1_000);
            Assert.Equal("background", statement.LastCaller);
            Assert.NotNull(statement.LastSeenAt);
            Assert.DoesNotContain(report.Queries, q => q.Query.Contains(elsewhere));
            Assert.Equal(0, await ScalarAsync<int>(connectionString, "SELECT count(*)::int FROM pg_extension WHERE extname = 'pg_stat_statements'"));
        }
        finally
        {
            await database.Server.DropDatabaseAsync(fresh);
        }
    }

    [Fact]
    public async Task Tables_show_sizes_live_and_dead_tuples_and_scans()
    {
        // A session that ends: PostgreSQL flushes a backend's statistics when it exits.
        await NonPooledExecuteAsync(database.ConnectionString, """
            CREATE TABLE insight_items (id int PRIMARY KEY, name text NOT NULL);
            INSERT INTO insight_items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;
            DELETE FROM insight_items WHERE id <= 100;
            SELECT count(*) FROM insight_items;
            SET enable_seqscan = off;
            SELECT name FROM insight_items WHERE id = 500;
            """);
        using var host = DataHost.Build(database.ConnectionString);

        TableStatistics? items = null;
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            var tables = await host.InScopeAsync((TableInsights insights) => insights.GetAsync());
            items = tables.SingleOrDefault(t => t.Name == "insight_items");
            if (items is { LiveTuples: 900, DeadTuples: 100, SequentialScans: > 0, IndexScans: > 0 }) break;
            await Task.Delay(200);
        }

        Assert.NotNull(items);
        Assert.Equal(("public", 900L, 100L), (items.Schema, items.LiveTuples, items.DeadTuples));
        Assert.True(items.SequentialScans >= 1 && items.IndexScans >= 1, items.ToString());
        Assert.True(items.TableBytes > 0 && items.IndexBytes > 0, items.ToString());
        Assert.True(items.TotalBytes >= items.TableBytes + items.IndexBytes, items.ToString());
    }

    [Fact]
    public async Task Unused_and_duplicate_indexes_are_found_and_unique_or_primary_ones_are_left_alone()
    {
        await NonPooledExecuteAsync(database.ConnectionString, """
            CREATE TABLE insight_orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL);
            CREATE INDEX ix_insight_orders_status ON insight_orders (status);
            CREATE INDEX ix_insight_orders_status_again ON insight_orders (status);
            CREATE INDEX ix_insight_orders_customer ON insight_orders (customer_id);
            CREATE INDEX ix_insight_orders_customer_created ON insight_orders (customer_id, created_at);
            CREATE UNIQUE INDEX ux_insight_orders_id_customer ON insight_orders (id, customer_id);
            CREATE INDEX ix_insight_orders_lower_status ON insight_orders (lower(status));
            """);
        using var host = DataHost.Build(database.ConnectionString);

        var report = await host.InScopeAsync((IndexInsights insights) => insights.GetAsync());

        var unused = report.Unused.Where(i => i.Table == "insight_orders").Select(i => i.Index).Order().ToList();
        Assert.Equal(["ix_insight_orders_customer", "ix_insight_orders_customer_created", "ix_insight_orders_lower_status",
            "ix_insight_orders_status", "ix_insight_orders_status_again"], unused);
        Assert.All(report.Unused, i => Assert.True(i.Bytes > 0));

        var duplicates = report.Duplicates.Where(d => d.Table == "insight_orders")
            .Select(d => (d.Index, d.CoveredBy)).Order().ToList();
        Assert.Equal([("ix_insight_orders_customer", "ix_insight_orders_customer_created"),
            ("ix_insight_orders_status_again", "ix_insight_orders_status")], duplicates);
        var duplicate = report.Duplicates.Single(d => d.Index == "ix_insight_orders_customer");
        Assert.Equal(("public", "CREATE INDEX ix_insight_orders_customer ON public.insight_orders USING btree (customer_id)"),
            (duplicate.Schema, duplicate.Definition));
        Assert.Contains("(customer_id, created_at)", duplicate.CoveredByDefinition);
    }

    [Fact]
    public async Task A_query_running_longer_than_the_threshold_is_listed_with_its_session()
    {
        var marker = $"long_{Guid.NewGuid():N}";
        await using var busy = new NpgsqlConnection(database.ConnectionString);
        await busy.OpenAsync();
        await using var sleep = new NpgsqlCommand($"SELECT pg_sleep(30) AS {marker}", busy);
        var running = sleep.ExecuteNonQueryAsync();
        using var host = DataHost.Build(database.ConnectionString);

        LongRunningQuery? found = null;
        var deadline = Stopwatch.StartNew();
        while (found is null && deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            var queries = await host.InScopeAsync((LongRunningQueryInsights insights) => insights.GetAsync(TimeSpan.FromSeconds(0.5)));
            found = queries.SingleOrDefault(q => q.Query?.Contains(marker) == true);
            if (found is null) await Task.Delay(100);
        }
        var withHighThreshold = await host.InScopeAsync((LongRunningQueryInsights insights) => insights.GetAsync(TimeSpan.FromHours(1)));
        sleep.Cancel();
        await Assert.ThrowsAnyAsync<Exception>(() => running); // 57014 query_canceled

        Assert.NotNull(found);
        Assert.Equal(busy.ProcessID, found.Pid);
        Assert.Equal("active", found.State);
        Assert.Equal(database.Server.Admin.Username, found.User);
        Assert.Equal("Timeout:PgSleep", found.WaitEvent);
        Assert.InRange(found.DurationSeconds, 0.5, 30);
        Assert.DoesNotContain(withHighThreshold, q => q.Query?.Contains(marker) == true);
    }

    private static DateTimeOffset Truncate(DateTimeOffset value) =>
        new(value.Ticks - value.Ticks % 10, value.Offset); // PostgreSQL keeps microseconds

    private static async Task NonPooledExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
