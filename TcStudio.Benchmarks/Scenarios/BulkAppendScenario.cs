using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using TcStudio.SystemDatabase.Activities;
using TcStudio.SystemDatabase.Entities;
using TcStudio.SystemDatabase.Security;
using Activity = TcStudio.SystemDatabase.Entities.Activity;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 1: appending many activity rows. The product's <see cref="ActivityBulkWriter"/> against raw Npgsql binary
/// COPY of the same rows into the same table (the baseline) and against EF AddRange + SaveChanges (the naive way).
/// Its own database, the activities table emptied and a checkpoint taken before each measured load.
/// </summary>
public sealed class BulkAppendScenario : IScenario
{
    private const string Database = "bench_bulk";

    public int Number => 1;
    public string Title => "Bulk append of activities";
    public string Measures =>
        "rows/s appending activity rows with ActivityBulkWriter (binary COPY), against raw Npgsql binary COPY of the same rows "
        + "(baseline) and EF AddRange + SaveChanges (naive)";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var environment = context.Environment;
        var connectionString = environment.ConnectionString(Database);
        await environment.CreateDatabaseAsync(Database);
        await using var product = ProductData.Create(connectionString);
        await product.MigrateAsync();
        await product.SeedAsync();
        var users = await DataGenerator.ReadSeededUsersAsync(connectionString);
        var workspace = await Sql.ScalarAsync<Guid>(connectionString, "SELECT id FROM workspaces WHERE slug = 'twsbp'");

        var now = DateTimeOffset.UtcNow;
        var records = Enumerable.Range(0, options.BulkRows).Select(i =>
        {
            var at = now.AddMilliseconds(-i);
            return new ActivityRecord(workspace, users.UserId, i % 3 == 0 ? "procedure.created" : "procedure.updated",
                EntityTypes.Procedure, Guid.CreateVersion7(at), $$"""{"name": "{{DataGenerator.ProcedureName(i)}}", "n": {{i}}}""", at,
                Guid.CreateVersion7(at));
        }).ToList();

        var writer = product.Services.GetRequiredService<ActivityBulkWriter>();
        await using var raw = context.RawDataSource(connectionString);
        // The API's app role is subject to row-level security, which refuses COPY FROM: the writer stages and moves.
        var names = SystemRoleNames.For(Database);
        const string AppPassword = "bench-app-role";
        await SystemDatabaseRoles.EnsureAsync(connectionString, names, new SystemDatabaseRoles.Passwords(null, AppPassword, null));
        await using var asApp = context.RawDataSource(new NpgsqlConnectionStringBuilder(connectionString) { Username = names.App,
            Password = AppPassword }.ConnectionString);
        var stagingWriter = new ActivityBulkWriter(asApp, TimeProvider.System);

        var variants = new (string Name, Func<Task<ulong>> Load)[]
        {
            ("raw", () => RawCopyAsync(raw, records)),
            ("product", () => writer.AppendAsync(records)),
            ("product as the app role", () => stagingWriter.AppendAsync(records)),
            ("ef", () => EfAddRangeAsync(product, records)),
        };
        var rates = variants.ToDictionary(v => v.Name, _ => new List<double>());
        for (var run = 0; run < options.Runs; run++)
        {
            // Rotate the order so no variant always runs first (or right after the slowest).
            for (var k = 0; k < variants.Length; k++)
            {
                var (name, load) = variants[(run + k) % variants.Length];
                await Sql.ExecuteAsync(connectionString, "TRUNCATE activities");
                await environment.CheckpointAsync();
                var stopwatch = Stopwatch.StartNew();
                var written = await load();
                var elapsed = stopwatch.Elapsed;
                if (written != (ulong)records.Count) throw new InvalidOperationException($"{name} wrote {written} of {records.Count} rows.");
                rates[name].Add(records.Count / elapsed.TotalSeconds);
                BenchContext.Log($"  bulk {name}: {records.Count / elapsed.TotalSeconds:#,0} rows/s");
            }
        }
        await Sql.ExecuteAsync(connectionString, "TRUNCATE activities");
        NpgsqlConnection.ClearAllPools();
        await environment.DropDatabaseAsync(Database);
        foreach (var role in names.All) await Sql.ExecuteAsync(environment.ConnectionString("postgres"), $"DROP ROLE IF EXISTS {role}");

        var productRate = Figure.Rate("rows/s", rates["product"]);
        var rawRate = Figure.Rate("rows/s", rates["raw"]);
        var efRate = Figure.Rate("rows/s", rates["ef"]);
        var stagedRate = Figure.Rate("rows/s", rates["product as the app role"]);
        var stagedRatio = Stats.Ratio(stagedRate, rawRate);
        var ratio = Stats.Ratio(productRate, rawRate);
        var met = productRate.Median >= 100_000 && ratio >= 0.8;
        return new ScenarioOutcome(
        [
            new ResultRow
            {
                Scenario = 1,
                What = $"append {options.BulkRows:#,0} activities: ActivityBulkWriter",
                Product = productRate,
                Baseline = rawRate,
                BaselineName = "raw COPY",
                Ratio = ratio,
                Target = "≥100,000 rows/s and ≥0.8× raw",
                Verdict = met ? Verdict.Met : Verdict.Missed,
            },
            new ResultRow
            {
                Scenario = 1,
                What = $"append {options.BulkRows:#,0} activities: ActivityBulkWriter as the app role (row-level security: "
                    + "staged, then INSERT … SELECT)",
                Product = stagedRate,
                Baseline = rawRate,
                BaselineName = "raw COPY (superuser)",
                Ratio = stagedRatio,
                Target = "≥0.8× raw",
                Verdict = stagedRatio >= 0.8 ? Verdict.Met : Verdict.Missed,
            },
            new ResultRow
            {
                Scenario = 1,
                What = $"append {options.BulkRows:#,0} activities: EF AddRange + SaveChanges",
                Product = efRate,
                Baseline = rawRate,
                BaselineName = "raw COPY",
                Ratio = Stats.Ratio(efRate, rawRate),
                Note = "what a naive implementation does; shown for scale, no target",
            },
        ],
        [
            $"{options.BulkRows:#,0} activity rows (every column set: workspace, user, action, entity, jsonb details, created_at), "
            + "into an empty activities table with its primary key, keyset index, foreign keys and CHECK constraints",
        ]);
    }

    /// <summary>The baseline: what a hand-written Npgsql COPY of the same rows looks like.</summary>
    private static async Task<ulong> RawCopyAsync(NpgsqlDataSource dataSource, List<ActivityRecord> records)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var importer = await connection.BeginBinaryImportAsync(ActivityBulkWriter.CopyCommand);
        foreach (var r in records)
        {
            await importer.StartRowAsync();
            await importer.WriteAsync(r.Id!.Value, NpgsqlDbType.Uuid);
            await importer.WriteAsync(r.WorkspaceId!.Value, NpgsqlDbType.Uuid);
            await importer.WriteAsync(r.UserId!.Value, NpgsqlDbType.Uuid);
            await importer.WriteAsync(r.Action, NpgsqlDbType.Varchar);
            await importer.WriteAsync(r.EntityType, NpgsqlDbType.Varchar);
            await importer.WriteAsync(r.EntityId!.Value, NpgsqlDbType.Uuid);
            await importer.WriteAsync(r.DetailsJson!, NpgsqlDbType.Jsonb);
            await importer.WriteAsync(r.CreatedAt!.Value, NpgsqlDbType.TimestampTz);
        }
        return await importer.CompleteAsync();
    }

    /// <summary>The naive way: entities through the product's DbContext, one SaveChanges.</summary>
    private static async Task<ulong> EfAddRangeAsync(ProductData product, List<ActivityRecord> records) =>
        (ulong)await product.WithContextAsync(async db =>
        {
            db.Activities.AddRange(records.Select(r => new Activity
            {
                Id = r.Id!.Value,
                WorkspaceId = r.WorkspaceId,
                UserId = r.UserId,
                Action = r.Action,
                EntityType = r.EntityType,
                EntityId = r.EntityId,
                Details = JsonDocument.Parse(r.DetailsJson!),
                CreatedAt = r.CreatedAt!.Value,
            }));
            var saved = await db.SaveChangesAsync();
            db.ChangeTracker.Clear();
            return saved;
        });
}
