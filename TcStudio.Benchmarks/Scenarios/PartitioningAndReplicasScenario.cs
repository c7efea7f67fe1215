using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 11 (issue 22): growing past one server.
/// <list type="number">
/// <item>The conversion of a filled activity log (1,000,000 rows over a year, 10,000 in --quick) into the monthly
/// partitioned table (migration PartitionedActivities, run by the product's migrator), while a writer keeps inserting
/// one activity at a time: the longest a write waited during the conversion is the writers' blocking time (target
/// under 5 s); baseline: the same writer's longest wait before the conversion.</item>
/// <item>The API over the system database and a streaming standby of it (<c>pg_basebackup -R</c>, both hosts in
/// ConnectionStrings:tcstudio): the share of the commands of list and activity-page requests that the standby
/// answered (target: all of them), then the same requests with the standby stopped (all answered by the primary,
/// no error).</item>
/// </list>
/// Not in --quick (a standby and a million rows); --quick --scenario 11 runs it small.
/// </summary>
public sealed class PartitioningAndReplicasScenario : IScenario
{
    private const string ConversionDatabase = "bench_partitioning";
    private const string Migration = "PartitionedActivities";

    public int Number => 11;
    public string Title => "Partitioned activity log and read replicas";
    public string Measures =>
        "the longest wait of a concurrent INSERT while the activity log is converted to monthly partitions, against the same writer before; "
        + "the share of list/activity-page reads answered by a standby, and errors when the standby stops";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var rows = new List<ResultRow>();
        var workload = new List<string>();
        await MeasureConversionAsync(context, rows, workload);
        await MeasureReplicaReadsAsync(context, rows, workload);
        return new ScenarioOutcome(rows, workload);
    }

    private async Task MeasureConversionAsync(BenchContext context, List<ResultRow> rows, List<string> workload)
    {
        var environment = context.Environment;
        var activities = context.Options.Quick ? 10_000 : 1_000_000;
        await environment.CreateDatabaseAsync(ConversionDatabase);
        var connectionString = environment.ConnectionString(ConversionDatabase);
        await using (var product = ProductData.Create(connectionString))
        {
            var all = await product.WithContextAsync(db => Task.FromResult(db.Database.GetMigrations().ToList()));
            var before = all[all.FindIndex(m => m.EndsWith(Migration, StringComparison.Ordinal)) - 1];
            await product.MigrateAsync(before);
            await product.SeedAsync();
        }
        var fill = Stopwatch.StartNew();
        await Sql.ExecuteAsync(connectionString, $"""
            INSERT INTO activities (id, workspace_id, action, entity_type, created_at)
            SELECT gen_random_uuid(), (SELECT id FROM workspaces ORDER BY id LIMIT 1), 'bench.seeded', 'system',
                   now() - (i % 365) * interval '1 day' - (i % 86400) * interval '1 second'
            FROM generate_series(1, {activities}) AS i;
            ANALYZE activities;
            """);
        BenchContext.Log($"  filled {activities:#,0} activities (plain table) in {fill.Elapsed.TotalSeconds:0.0} s");
        await environment.CheckpointAsync();

        var idle = await WriteWhileAsync(connectionString, () => Task.Delay(TimeSpan.FromSeconds(context.Options.Quick ? 1 : 3)));
        var conversion = Stopwatch.StartNew();
        var during = await WriteWhileAsync(connectionString, async () =>
        {
            await using var product = ProductData.Create(connectionString);
            await product.MigrateAsync();
        });
        conversion.Stop();
        var partitions = await Sql.ScalarAsync<long>(connectionString,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'activities'::regclass");
        var total = await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM activities");
        BenchContext.Log($"  converted in {conversion.Elapsed.TotalSeconds:0.0} s: {partitions} partitions, {total:#,0} rows; writer: "
            + $"{during.Writes} inserts, longest wait {during.LongestMs:0} ms (before: {idle.LongestMs:0} ms)");
        workload.Add($"conversion: {activities:#,0} activities over 365 days in a plain table, migrated by the product's migrator to "
            + $"{partitions} partitions; one writer INSERTs one activity at a time throughout ({during.Writes} inserts during the conversion)");

        rows.Add(new ResultRow
        {
            Scenario = Number,
            What = $"writers blocked by the conversion of {activities:#,0} activities (longest wait of one INSERT, ms)",
            Product = Figure.Time("ms", [during.LongestMs]),
            Baseline = Figure.Time("ms", [idle.LongestMs]),
            BaselineName = "same writer before the conversion",
            Target = "< 5000 ms",
            Verdict = during.LongestMs < 5000 ? Verdict.Met : Verdict.Missed,
            Note = $"the whole conversion took {conversion.Elapsed.TotalSeconds:0.0} s; only its last step (tail copy and rename) blocks; "
                + $"{during.Failures} failed inserts; rows after: {total:#,0}",
        });
        rows.Add(new ResultRow
        {
            Scenario = Number,
            What = $"conversion of {activities:#,0} activities, whole migration (s)",
            Product = Figure.Time("s", [conversion.Elapsed.TotalSeconds]),
        });
        NpgsqlConnection.ClearAllPools();
        await environment.DropDatabaseAsync(ConversionDatabase);
    }

    private sealed record WriterFigures(int Writes, double LongestMs, int Failures);

    /// <summary>One connection INSERTs one activity at a time until <paramref name="work"/> is done; the longest wait.</summary>
    private static async Task<WriterFigures> WriteWhileAsync(string connectionString, Func<Task> work)
    {
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            await using var connection = new NpgsqlConnection(
                new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
            await connection.OpenAsync();
            var workspace = await new NpgsqlCommand("SELECT id FROM workspaces ORDER BY id LIMIT 1", connection).ExecuteScalarAsync();
            var (writes, failures, longest) = (0, 0, 0.0);
            while (!stop.IsCancellationRequested)
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    await using var insert = new NpgsqlCommand(
                        "INSERT INTO activities (id, workspace_id, action, entity_type) VALUES (gen_random_uuid(), $1, 'bench.written', 'system')",
                            connection)
                    {
                        Parameters = { new() { Value = workspace } },
                    };
                    await insert.ExecuteNonQueryAsync();
                    writes++;
                }
                catch (PostgresException)
                {
                    // The table was swapped under a prepared plan, or similar: counted, the writer goes on.
                    failures++;
                }
                longest = Math.Max(longest, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                await Task.Delay(5);
            }
            return new WriterFigures(writes, longest, failures);
        });
        await Task.Delay(200);
        try
        {
            await work();
        }
        finally
        {
            await Task.Delay(200);
            stop.Cancel();
        }
        return await writer;
    }

    private async Task MeasureReplicaReadsAsync(BenchContext context, List<ResultRow> rows, List<string> workload)
    {
        var environment = context.Environment;
        await context.SystemAsync();
        var standbyDirectory = Path.Combine(Path.GetTempPath(), "tcstudio-bench", "standby-" + Guid.NewGuid().ToString("N")[..12]);
        var copy = Stopwatch.StartNew();
        var standby = await environment.Cluster.CreateStandbyAsync(standbyDirectory);
        BenchContext.Log($"  standby on port {standby.Port} in {copy.Elapsed.TotalSeconds:0.0} s");
        try
        {
            var primaryConnection = environment.ConnectionString(BenchEnvironment.SystemDatabase);
            var multiHost = new NpgsqlConnectionStringBuilder(primaryConnection)
            {
                Host = $"127.0.0.1:{environment.Cluster.Port},127.0.0.1:{standby.Port}",
            }.ConnectionString;
            await using var api = await ApiHost.StartAsync(multiHost);
            using var client = api.CreateClient(await api.LoginAsync("admin", ProductData.AdminPassword));
            var slug = "bench-replica-" + Guid.NewGuid().ToString("N")[..8];
            (await client.PostAsJsonAsync("/api/workspaces", new { name = "replica reads", slug })).EnsureSuccessStatusCode();
            await WaitForReplayAsync(primaryConnection,
                new NpgsqlConnectionStringBuilder(primaryConnection) { Port = standby.Port }.ConnectionString);

            var requests = context.Options.Quick ? 40 : 2_000;
            string[] paths = ["/api/workspaces", $"/api/workspaces/{slug}/activities?limit=50", $"/api/workspaces/{slug}/procedures"];
            var withStandby = await CountAnswersAsync(client, paths, requests, standby.Port);
            await standby.StopAsync();
            var withoutStandby = await CountAnswersAsync(client, paths, Math.Max(10, requests / 10), standby.Port);
            BenchContext.Log($"  reads: {withStandby.Standby} of {withStandby.Commands} commands on the standby; after it stopped "
                + $"{withoutStandby.Standby} of {withoutStandby.Commands}, {withoutStandby.Errors} failed requests");
            workload.Add($"replica reads: {requests} GETs round-robin over {string.Join(", ", paths)} through the API (in-process, admin), "
                + "ConnectionStrings:tcstudio = primary,standby; commands attributed by Npgsql's server.port; then a tenth as many "
                + "with the standby stopped");

            rows.Add(new ResultRow
            {
                Scenario = Number,
                What = $"share of list/activity-page commands answered by the standby ({requests} requests, %)",
                Product = Figure.Rate("%", [100.0 * withStandby.Standby / Math.Max(1, withStandby.Commands)]),
                Target = ">= 95 %",
                Verdict = withStandby.Standby >= 0.95 * withStandby.Commands && withStandby.Errors == 0 ? Verdict.Met : Verdict.Missed,
                Note = $"{withStandby.Errors} failed requests; the rest are the API's own background work and session checks, "
                    + "which stay on the primary",
            });
            rows.Add(new ResultRow
            {
                Scenario = Number,
                What = "the same reads with the standby stopped: failed requests (answered by the primary)",
                Product = Figure.Time("requests", [withoutStandby.Errors]),
                Target = "0",
                // What the row measures: failed requests. Commands still answered by the stopping standby are in the note.
                Verdict = withoutStandby.Errors == 0 ? Verdict.Met : Verdict.Missed,
                Note = $"{withoutStandby.Commands} commands, {withoutStandby.Standby} on the standby",
            });
        }
        finally
        {
            await standby.DestroyAsync();
            NpgsqlConnection.ClearAllPools();
        }
    }

    private sealed record Answers(int Commands, int Standby, int Errors);

    private static async Task<Answers> CountAnswersAsync(HttpClient client, string[] paths, int requests, int standbyPort)
    {
        var ports = new ConcurrentQueue<int>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.GetTagItem("db.query.text") is null) return; // connection opens are traced too
                if (activity.GetTagItem("server.port") is int port) ports.Enqueue(port);
            },
        };
        ActivitySource.AddActivityListener(listener);
        var errors = 0;
        for (var i = 0; i < requests; i++)
        {
            using var response = await client.GetAsync(paths[i % paths.Length]);
            if (!response.IsSuccessStatusCode) errors++;
        }
        return new Answers(ports.Count, ports.Count(p => p == standbyPort), errors);
    }

    private static async Task WaitForReplayAsync(string primary, string standby)
    {
        var target = await Sql.ScalarAsync<string>(primary, "SELECT pg_current_wal_insert_lsn()::text");
        for (var attempt = 0; attempt < 600; attempt++)
        {
            if (await Sql.ScalarAsync<bool>(standby, "SELECT pg_last_wal_replay_lsn() >= @l::pg_lsn", ("l", target))) return;
            await Task.Delay(100);
        }
        throw new TimeoutException("The standby did not catch up within 60 s.");
    }
}
