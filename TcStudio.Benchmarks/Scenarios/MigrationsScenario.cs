using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql;
using TcStudio.SystemDatabase;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 6: the product's migrator (SystemDatabaseMigrator under the worker's advisory lock, as the migration
/// worker runs it) migrating an empty database and reverting everything, against the same SQL run as one raw script;
/// then reverting the last migration (and, when there are several, re-applying it and reverting all) on a copy of
/// the large scale database, against the same operation on the small empty one.
/// </summary>
public sealed class MigrationsScenario : IScenario
{
    private const string Empty = "bench_mig_empty";
    private const string RawEmpty = "bench_mig_raw";
    private const string Big = "bench_mig_big";
    private const string BigTemplate = "bench_mig_big_template";

    public int Number => 6;
    public string Title => "Migrations";
    public string Measures =>
        "seconds to migrate an empty database, to revert all migrations, and to revert the last one on a large database, with the "
        + "product's migrator; baselines: the same SQL as a raw script, and the same operation on an empty database";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var environment = context.Environment;
        var scale = await ScaleDatabases.GetAsync(context);
        var large = scale.Large;

        // The issue's large database: the large scale database's 1,000,000 activities, with its procedures cut to
        // the big workspace's 100,000 (built once; each run reverts a fresh copy).
        var bigProcedures = options.Scale.BigWorkspaceRows;
        var reshape = Stopwatch.StartNew();
        await environment.CreateDatabaseAsync(BigTemplate, template: large.Name);
        var templateConnection = environment.ConnectionString(BigTemplate);
        var bigWorkspace = await Sql.ScalarAsync<Guid>(templateConnection, "SELECT id FROM workspaces WHERE slug = @s",
            ("s", ScaleDatabases.BigWorkspace));
        var creator = await Sql.ScalarAsync<Guid>(templateConnection, "SELECT id FROM users WHERE username = 'admin'");
        await DataGenerator.WithIndexesRebuiltAfterAsync(templateConnection, ["stored_procedures"], async () =>
        {
            await Sql.ExecuteAsync(templateConnection, "TRUNCATE stored_procedures");
            await DataGenerator.CopyProceduresAsync(templateConnection, [(bigWorkspace, 0, bigProcedures)], creator);
        });
        var bigActivities = await Sql.ScalarAsync<long>(templateConnection, "SELECT count(*) FROM activities");
        BenchContext.Log($"  built {BigTemplate} ({bigActivities:#,0} activities, {bigProcedures:#,0} procedures) in "
            + $"{reshape.Elapsed.TotalSeconds:0.0} s");
        NpgsqlConnection.ClearAllPools();

        string[] migrations;
        string upScript, downScript, lastDownScript;
        await environment.CreateDatabaseAsync(Empty);
        await using (var probe = ProductData.Create(environment.ConnectionString(Empty)))
        await using (var scope = probe.Scope())
        {
            var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
            migrations = db.Database.GetMigrations().ToArray();
            var migrator = db.GetService<IMigrator>();
            upScript = migrator.GenerateScript(Migration.InitialDatabase, migrations[^1]);
            downScript = migrator.GenerateScript(migrations[^1], Migration.InitialDatabase);
            lastDownScript = migrator.GenerateScript(migrations[^1], migrations.Length > 1 ? migrations[^2] : Migration.InitialDatabase);
        }
        var last = migrations[^1];
        var several = migrations.Length > 1;

        var figures = new Dictionary<string, List<double>>();
        void Add(string key, TimeSpan elapsed) => (figures.TryGetValue(key, out var list) ? list : figures[key] = []).Add(elapsed.TotalSeconds);

        for (var run = 0; run < options.Runs; run++)
        {
            // Empty database: product migrator vs raw script.
            await environment.CreateDatabaseAsync(Empty);
            await environment.CreateDatabaseAsync(RawEmpty);
            await environment.CheckpointAsync();
            await using (var product = ProductData.Create(environment.ConnectionString(Empty)))
            {
                Add("migrate-empty", await Timed(() => product.MigrateAsync()));
                Add("raw-migrate-empty", await Timed(() => Sql.RunScriptAsync(environment.ConnectionString(RawEmpty), upScript)));
                if (several)
                {
                    Add("revert-last-empty", await Timed(() => product.RevertAsync(null)));
                    Add("reapply-last-empty", await Timed(() => product.MigrateAsync()));
                }
                Add("revert-all-empty", await Timed(() => product.RevertAsync(Migration.InitialDatabase)));
                Add("raw-revert-all-empty", await Timed(() => Sql.RunScriptAsync(environment.ConnectionString(RawEmpty), downScript)));
            }
            NpgsqlConnection.ClearAllPools();

            // A copy of the large scale database (the copy itself is not timed).
            var copy = Stopwatch.StartNew();
            await environment.CreateDatabaseAsync(Big, template: BigTemplate);
            BenchContext.Log($"  copied {BigTemplate} in {copy.Elapsed.TotalSeconds:0.0} s");
            await environment.CheckpointAsync();
            await using (var product = ProductData.Create(environment.ConnectionString(Big)))
            {
                Add("revert-last-big", await Timed(() => product.RevertAsync(null)));
                if (several)
                {
                    Add("reapply-last-big", await Timed(() => product.MigrateAsync()));
                    Add("revert-all-big", await Timed(() => product.RevertAsync(Migration.InitialDatabase)));
                }
            }
            NpgsqlConnection.ClearAllPools();
            await environment.DropDatabaseAsync(Big);
        }
        await environment.DropDatabaseAsync(Empty);
        await environment.DropDatabaseAsync(RawEmpty);
        await environment.DropDatabaseAsync(BigTemplate);

        Figure F(string key) => Figure.Time("s", figures[key]);
        ResultRow Row(string what, string product, string? baseline, string? baselineName) => new()
        {
            Scenario = 6,
            What = what,
            Product = F(product),
            Baseline = baseline is null ? null : F(baseline),
            BaselineName = baselineName,
            Ratio = baseline is null ? null : F(product).Median / F(baseline).Median,
            RatioMeaning = "×",
            Target = "< 5 s",
            Verdict = F(product).Median < 5 ? Verdict.Met : Verdict.Missed,
        };

        var bigLabel = $"the large database ({bigActivities:#,0} activities and {bigProcedures:#,0} procedures)";
        var rows = new List<ResultRow>
        {
            Row($"migrate an empty database ({migrations.Length} migration{(migrations.Length == 1 ? "" : "s")})", "migrate-empty",
                "raw-migrate-empty", "raw script"),
            Row("revert all migrations, empty database", "revert-all-empty", "raw-revert-all-empty", "raw script"),
            Row($"revert the last migration ({last}), {bigLabel}", "revert-last-big", several ? "revert-last-empty" : "revert-all-empty",
                "same on empty"),
        };
        if (several)
        {
            rows.Add(Row($"re-apply the last migration, {bigLabel}", "reapply-last-big", "reapply-last-empty", "same on empty"));
            rows.Add(Row($"revert all migrations, {bigLabel}", "revert-all-big", "revert-all-empty", "same on empty"));
        }
        return new ScenarioOutcome(rows,
        [
            $"migrations: {string.Join(", ", migrations)}",
            "product: SystemDatabaseMigrator (one migration at a time, EF's history table) under MigrationLock, as `TcStudio.MigrationWorker "
                + "migrate|revert` runs them, minus process start",
            "raw script: the same migrations' SQL (IMigrator.GenerateScript) run by psql, statement by statement",
            $"large database: {large.Name}'s activities ({bigActivities:#,0}) with {bigProcedures:#,0} procedures in one "
                + "workspace, as the issue specifies"
            + (several ? "" : "; with one migration, reverting the last one reverts all"),
        ]);
    }

    private static async Task<TimeSpan> Timed(Func<Task> work)
    {
        var stopwatch = Stopwatch.StartNew();
        await work();
        return stopwatch.Elapsed;
    }
}
