using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase.Insights;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>The pool figures (Npgsql's meter) and the database size gauge (ours), read as an exporter reads them.</summary>
public sealed class PoolAndSizeMetricsTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task Pool_use_under_concurrency_shows_in_Npgsql_pool_metrics()
    {
        // A pool of this test's own, by name: Npgsql tags every instrument with it.
        var poolName = $"pool-test-{Guid.NewGuid():N}"[..20];
        using var recorder = new MeasurementRecorder(i => i.Meter.Name == NpgsqlPoolMetrics.MeterName);
        using var poolMetrics = new NpgsqlPoolMetrics();
        var settings = new NpgsqlConnectionStringBuilder(database.ConnectionString) { MaxPoolSize = 3, Timeout = 3 };
        await using var dataSource = new NpgsqlDataSourceBuilder(settings.ConnectionString) { Name = poolName }.Build();

        // Eight concurrent workers on a pool of three: five wait.
        await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            await using var command = new NpgsqlCommand("SELECT pg_sleep(0.2)", connection);
            await command.ExecuteNonQueryAsync();
        }));

        // Hold every connection: the pool reports them used; one more open times out.
        var held = new List<NpgsqlConnection>();
        for (var i = 0; i < 3; i++) held.Add(await dataSource.OpenConnectionAsync());
        recorder.Observe();
        var whileHeld = poolMetrics.Read(poolName).Single();
        await Assert.ThrowsAnyAsync<NpgsqlException>(async () => await dataSource.OpenConnectionAsync());
        foreach (var connection in held) await connection.DisposeAsync();
        recorder.Observe();

        var ours = recorder.All.Where(m => m.Tag(NpgsqlPoolMetrics.PoolNameTag) == poolName).ToList();
        Assert.Contains(ours, m => m.Instrument == NpgsqlPoolMetrics.ConnectionCount && m.Tag(NpgsqlPoolMetrics.StateTag) == "used" && m.Value == 3);
        Assert.Contains(ours, m => m.Instrument == NpgsqlPoolMetrics.ConnectionCount && m.Tag(NpgsqlPoolMetrics.StateTag) == "idle" && m.Value == 3);
        Assert.Contains(ours, m => m.Instrument == NpgsqlPoolMetrics.ConnectionMax && m.Value == 3);
        Assert.Contains(ours, m => m.Instrument == NpgsqlPoolMetrics.PendingRequests && m.Value > 0);
        Assert.Contains(ours, m => m.Instrument == NpgsqlPoolMetrics.Timeouts && m.Value >= 1);
        Assert.Contains(ours, m => m.Instrument == NpgsqlPoolMetrics.CreateTime && m.Value > 0);
        Assert.Contains(ours, m => m.Instrument == "db.client.operation.duration" && m.Value >= 0.2);

        // The insights' reader sees the same pool.
        Assert.Equal((0L, 3L, 3L), (whileHeld.Idle, whileHeld.Used, whileHeld.Max));
        var after = poolMetrics.Read(poolName).Single();
        Assert.Equal((3L, 0L, 0L), (after.Idle, after.Used, after.PendingRequests));
        Assert.Equal(1, after.Timeouts);
        Assert.Equal(3, after.ConnectionsCreated);
        Assert.True(after.AverageCreateTimeMs > 0);
    }

    [Fact]
    public async Task A_size_sample_is_stored_with_the_largest_tables_drops_expired_samples_and_feeds_the_size_gauge()
    {
        // A database of its own: the class's other tests run samplers that would add rows to a shared one.
        var own = new SystemDatabaseFixture(database.Server);
        await own.InitializeAsync();
        await using var _ = own;
        using var host = DataHost.Build(own.ConnectionString);
        var meters = host.Services.GetRequiredService<IMeterFactory>();
        var sampler = host.Services.GetRequiredService<DatabaseSizeSampler>();
        using var recorder = new MeasurementRecorder(i => i.Meter.Scope == meters && i.Name == DatabaseMetrics.DatabaseSizeName);
        await using (var db = own.CreateDbContext())
        {
            db.DatabaseSizeSamples.Add(new() { SampledAt = DateTimeOffset.UtcNow.AddDays(-91), DatabaseBytes = 1 });
            await db.SaveChangesAsync();
        }

        recorder.Observe();
        Assert.Empty(recorder.All); // no sample yet, no reading
        var sample = await sampler.SampleAsync();

        Assert.NotNull(sample);
        var tableCount = await own.ScalarAsync<long>(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')");
        var stored = await own.ColumnAsync(
            "SELECT database_bytes || ' ' || jsonb_array_length(largest_tables) FROM database_size_samples ORDER BY sampled_at");
        // The 91-day-old sample is gone.
        Assert.Equal([$"{sample.DatabaseBytes} {Math.Min(tableCount, DatabaseSizeSampler.LargestTablesCount)}"], stored);
        var size = await own.ScalarAsync<long>("SELECT pg_database_size(current_database())");
        Assert.InRange(sample.DatabaseBytes, size / 2, size * 2);
        var tables = await own.ColumnAsync(
            "SELECT t->>'table' FROM database_size_samples, jsonb_array_elements(largest_tables) t");
        Assert.Contains("public.users", tables);

        recorder.Observe();
        var reading = Assert.Single(recorder.All);
        Assert.Equal(sample.DatabaseBytes, reading.Value);
        Assert.Equal("By", reading.Unit);
        Assert.Equal(own.DatabaseName, reading.Tag(DatabaseMetrics.DatabaseNameTag));
    }

    [Fact]
    public async Task The_sampler_samples_at_start_and_survives_an_unreachable_database()
    {
        using var working = DataHost.Build(database.ConnectionString);
        var unreachableLogs = new LogSink();
        using var unreachable = DataHost.Build(
            $"Host=127.0.0.1;Port={TcStudio.LocalPostgres.LocalPostgresCluster.FindFreePort()};Database=nowhere;Username=x;Password=y",
            unreachableLogs);
        var countBefore = await database.ScalarAsync<long>("SELECT count(*) FROM database_size_samples");

        await working.StartAsync();
        await unreachable.StartAsync();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(15);
            while (DateTime.UtcNow < deadline
                   && (await database.ScalarAsync<long>("SELECT count(*) FROM database_size_samples") == countBefore
                       || !unreachableLogs.Entries.Any(e => e.Message.StartsWith("Database size sample failed"))))
            {
                await Task.Delay(100);
            }

            Assert.True(await database.ScalarAsync<long>("SELECT count(*) FROM database_size_samples") > countBefore);
            var failure = Assert.Single(unreachableLogs.Entries, e => e.Message.StartsWith("Database size sample failed"));
            Assert.Contains("next attempt in 60 s", failure.Message);
            Assert.DoesNotContain("Password=y", failure.Message);
            var lifetime = unreachable.Services.GetRequiredService<IHostApplicationLifetime>();
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested);
        }
        finally
        {
            await unreachable.StopAsync();
            await working.StopAsync();
        }
    }
}
