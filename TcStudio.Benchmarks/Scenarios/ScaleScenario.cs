using System.Diagnostics;
using System.Text.Json;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>The scale scenario's two databases (also the migrations scenario's big one), built once per run.</summary>
public sealed record ScaleDatabases(ScaleDatabase Small, ScaleDatabase Large)
{
    public const string HotWorkspace = "scale-hot";
    public const string BigWorkspace = "scale-big";

    public static Task<ScaleDatabases> GetAsync(BenchContext context) =>
        context.SharedAsync("scale", async () =>
        {
            var sizes = context.Options.Scale;
            var small = await ScaleDatabase.BuildAsync(context, "bench_scale_small", sizes.SmallRows, withBigWorkspace: false);
            var large = await ScaleDatabase.BuildAsync(context, "bench_scale_large", sizes.LargeRows, withBigWorkspace: true);
            return new ScaleDatabases(small, large);
        });
}

public sealed record ScaleDatabase(string Name, string ConnectionString, int Rows, bool HasBigWorkspace, TimeSpan BuildTime, string Description)
{
    public static async Task<ScaleDatabase> BuildAsync(BenchContext context, string name, int rows, bool withBigWorkspace)
    {
        var sizes = context.Options.Scale;
        var environment = context.Environment;
        var stopwatch = Stopwatch.StartNew();
        BenchContext.Log($"  building {name}: {rows:#,0} procedures and {rows:#,0} activities");
        await environment.CreateDatabaseAsync(name);
        var connectionString = environment.ConnectionString(name);
        await using (var product = ProductData.Create(connectionString))
        {
            await product.MigrateAsync();
            await product.SeedAsync();
        }
        var users = await DataGenerator.ReadSeededUsersAsync(connectionString);
        var big = withBigWorkspace ? sizes.BigWorkspaceRows : 0;
        var perFiller = (rows - sizes.HotWorkspaceRows - big) / sizes.FillerWorkspaces;
        var fillerSlugs = Enumerable.Range(1, sizes.FillerWorkspaces).Select(i => $"scale-f{i:D4}").ToList();
        var fillers = await DataGenerator.CreateWorkspacesAsync(connectionString, fillerSlugs, users.AdminId, member: null);
        var measured = await DataGenerator.CreateWorkspacesAsync(connectionString,
            withBigWorkspace ? [ScaleDatabases.HotWorkspace, ScaleDatabases.BigWorkspace] : [ScaleDatabases.HotWorkspace],
            users.AdminId, users.UserId);

        var procedurePlan = new List<(Guid, int, int)> { (measured[0], 0, sizes.HotWorkspaceRows) };
        var activityPlan = new List<(Guid, int)> { (measured[0], sizes.HotWorkspaceRows) };
        if (withBigWorkspace)
        {
            procedurePlan.Add((measured[1], 0, big));
            activityPlan.Add((measured[1], big));
        }
        var remainder = rows - sizes.HotWorkspaceRows - big - perFiller * fillers.Length;
        for (var i = 0; i < fillers.Length; i++)
        {
            var count = perFiller + (i < remainder ? 1 : 0);
            procedurePlan.Add((fillers[i], 0, count));
            activityPlan.Add((fillers[i], count));
        }
        await DataGenerator.WithIndexesRebuiltAfterAsync(connectionString, ["stored_procedures", "activities"], async () =>
        {
            await DataGenerator.CopyProceduresAsync(connectionString, procedurePlan, users.AdminId);
            await DataGenerator.CopyActivitiesAsync(connectionString, activityPlan, users.UserId);
        });
        var procedures = await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM stored_procedures");
        var activities = await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM activities");
        var size = await Sql.ScalarAsync<string>(connectionString, "SELECT pg_size_pretty(pg_database_size(current_database()))");
        await environment.CheckpointAsync();
        var description = $"{name}: {procedures:#,0} procedures and {activities:#,0} activities over {fillers.Length:#,0} filler workspaces "
            + $"({perFiller:#,0} each), {ScaleDatabases.HotWorkspace} ({sizes.HotWorkspaceRows:#,0} each)"
            + (withBigWorkspace ? $" and {ScaleDatabases.BigWorkspace} ({big:#,0} each)" : "") + $"; {size} on disk";
        BenchContext.Log($"  {description}; built in {stopwatch.Elapsed.TotalSeconds:0.0} s");
        return new ScaleDatabase(name, connectionString, rows, withBigWorkspace, stopwatch.Elapsed, description);
    }
}

/// <summary>
/// Scenario 5: list, search and activity-log pages at a small and a large table size. The measured workspace
/// (scale-hot) is identical in both databases, so only the table's size differs; in the large one, the same
/// requests also run in a workspace of 100,000 procedures. One client: latency, not throughput.
/// </summary>
public sealed class ScaleScenario : IScenario
{
    public int Number => 5;
    public string Title => "Scale";
    public string Measures =>
        "p50 latency (1 client) of list, search and activity-log pages through the API in a small and in a large database: the ratio "
        + "large/small; the same requests with raw Npgsql as the baseline that shows what the schema alone allows";

    private sealed record Kind(string Label, Func<string, string?, RequestSpec> Request,
        Func<RawQueries, string, Guid, (DateTimeOffset At, Guid Id), Task> Raw);

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var databases = await ScaleDatabases.GetAsync(context);
        var terms = DataGenerator.SearchTerms;
        var deepPage = Math.Clamp(options.Scale.HotWorkspaceRows / 50, 2, 20);
        var pages = context.PagesOf(options.Scale.HotWorkspaceRows);

        Kind[] kinds =
        [
            new("procedures list page of 50",
                (slug, _) => new RequestSpec("list", "GET", $"/api/workspaces/{slug}/procedures?page={{page}}&pageSize=50"),
                (q, slug, user, _) => q.ListProceduresAsync(slug, user, Random.Shared.Next(pages) + 1)),
            new("procedures full-text search", (slug, _) => new RequestSpec("search", "GET", $"/api/workspaces/{slug}/procedures?search={{term}}"),
                (q, slug, user, _) => q.SearchProceduresAsync(slug, user, terms[Random.Shared.Next(terms.Count)])),
            new("activity log, first page", (slug, _) => new RequestSpec("activities", "GET", $"/api/workspaces/{slug}/activities?limit=50"),
                (q, slug, user, _) => q.ActivityPageAsync(slug, user, null)),
            new($"activity log, page {deepPage} by cursor", (slug, cursor) => new RequestSpec("activities-deep", "GET",
                    $"/api/workspaces/{slug}/activities?limit=50&cursor={Uri.EscapeDataString(cursor ?? "")}"),
                (q, slug, user, key) => q.ActivityPageAsync(slug, user, key)),
        ];

        // Each target: (database, workspace) measured with every kind.
        var targets = new List<(ScaleDatabase Database, string Workspace)>
        {
            (databases.Small, ScaleDatabases.HotWorkspace),
            (databases.Large, ScaleDatabases.HotWorkspace),
            (databases.Large, ScaleDatabases.BigWorkspace),
        };
        var results = new Dictionary<(string Db, string Workspace, string Kind), HttpMeasure.Comparison>();
        var availability = new Dictionary<string, string?>();
        foreach (var (database, workspace) in targets)
        {
            await context.StopApiAsync();
            await using var api = await ApiHost.StartAsync(database.ConnectionString);
            var token = await api.LoginAsync("user", ProductData.UserPassword);
            var users = await DataGenerator.ReadSeededUsersAsync(database.ConnectionString);
            await using var dataSource = context.RawDataSource(database.ConnectionString);
            var raw = new RawQueries(dataSource);
            var deepCursor = await FindCursorAsync(api, token, workspace, deepPage);
            var deepKey = await RawQueries.KeyBeforePageAsync(database.ConnectionString, workspace, deepPage);
            foreach (var kind in kinds)
            {
                var spec = kind.Request(workspace, deepCursor);
                var probePath = spec.Path.Replace("{page}", "1").Replace("{term}", "orders");
                var (available, detail) = await api.ProbeAsync(token, HttpMethod.Get, probePath);
                if (kind.Label.Contains("cursor") && deepCursor is null && available)
                {
                    (available, detail) = (false, "no cursor: the activity log did not return a nextCursor to follow");
                }
                availability[kind.Label] = available ? null : detail.Replace(workspace, "{slug}");
                BenchContext.Log($"  {kind.Label} in {workspace} of {database.Name}");
                results[(database.Name, workspace, kind.Label)] = await HttpMeasure.CompareAsync(context,
                    available ? _ => new LoadCommand
                    {
                        BaseUrl = api.BaseUrl, BearerToken = token, Clients = 1, WarmupMs = 0, DurationMs = 0, Requests = [spec],
                        Pages = pages, Terms = terms,
                    } : null,
                    1, (_, _) => kind.Raw(raw, workspace, users.UserId, deepKey), options.ScaleDuration,
                    TimeSpan.FromMilliseconds(Math.Min(1000, options.ScaleDuration.TotalMilliseconds / 2)));
            }
        }

        var rows = new List<ResultRow>();
        foreach (var kind in kinds)
        {
            var small = results[(databases.Small.Name, ScaleDatabases.HotWorkspace, kind.Label)];
            var large = results[(databases.Large.Name, ScaleDatabases.HotWorkspace, kind.Label)];
            var big = results[(databases.Large.Name, ScaleDatabases.BigWorkspace, kind.Label)];
            rows.Add(LatencyRatioRow(kind.Label + $", {ScaleDatabases.HotWorkspace}: {databases.Large.Rows:#,0} vs {databases.Small.Rows:#,0} rows",
                large, small, availability[kind.Label]));
            rows.Add(LatencyRatioRow(kind.Label
                + $", {ScaleDatabases.BigWorkspace} ({options.Scale.BigWorkspaceRows:#,0} rows) vs {ScaleDatabases.HotWorkspace} in "
                + $"{databases.Small.Rows:#,0}",
                big, small, availability[kind.Label]));
        }
        return new ScenarioOutcome(rows,
        [
            databases.Small.Description,
            databases.Large.Description,
            $"each figure: 1 client, {options.ScaleDuration.TotalSeconds:0.##} s measured; list pages 1–{pages} at random, search terms "
            + $"{string.Join(", ", terms)} at random, activity pages of 50 (the first; and page {deepPage}, reached by cursor)",
            "procedures list: " + kinds[0].Request("{slug}", null) + "; search: " + kinds[1].Request("{slug}", null)
            + "; activity log: " + kinds[2].Request("{slug}", null) + $" and ?cursor=<page {deepPage}'s cursor>",
            "product column: p50 in the larger case; baseline column: p50 in the smaller; ratio larger/smaller (target ≤ 1.5); "
            + "the note gives raw Npgsql's own ratio for the same statements",
        ]);
    }

    private static ResultRow LatencyRatioRow(string what, HttpMeasure.Comparison larger, HttpMeasure.Comparison smaller, string? unavailable)
    {
        var rawLarger = larger.Baseline.Count == 0 ? null : Figure.Time("ms", larger.Baseline.Select(r => r.P50Ms));
        var rawSmaller = smaller.Baseline.Count == 0 ? null : Figure.Time("ms", smaller.Baseline.Select(r => r.P50Ms));
        var rawRatio = rawLarger is null || rawSmaller is null ? (double?)null : rawLarger.Median / rawSmaller.Median;
        var rawNote = $"raw Npgsql p50 {(rawLarger is null ? "–" : Report.Number(rawLarger.Median))} vs "
            + $"{(rawSmaller is null ? "–" : Report.Number(rawSmaller.Median))} ms"
            + (rawRatio is null ? "" : $" (ratio {rawRatio:0.00})");
        if (unavailable is not null || larger.Product.Count == 0 || smaller.Product.Count == 0)
        {
            return new ResultRow
            {
                Scenario = 5, What = what, Verdict = Verdict.NotAvailable, BaselineName = "",
                Note = $"{unavailable ?? "not measured"}; {rawNote}",
            };
        }
        var productLarger = Figure.Time("ms p50", larger.Product.Select(r => r.P50Ms));
        var productSmaller = Figure.Time("ms p50", smaller.Product.Select(r => r.P50Ms));
        var ratio = productLarger.Median / productSmaller.Median;
        var errors = larger.Product.Concat(smaller.Product).Sum(r => r.ErrorCount);
        return new ResultRow
        {
            Scenario = 5,
            What = what,
            Product = productLarger,
            ProductLatency = Latency.From(larger.Product),
            Baseline = productSmaller,
            BaselineName = "(smaller)",
            BaselineLatency = Latency.From(smaller.Product),
            Ratio = ratio,
            RatioMeaning = "larger/smaller",
            Target = "≤ 1.5",
            Verdict = errors > 0 ? Verdict.Error : ratio <= 1.5 ? Verdict.Met : Verdict.Missed,
            Errors = new Dictionary<string, long> { ["errors"] = errors }.Where(e => e.Value > 0).ToDictionary(),
            Note = rawNote + (errors > 0 ? $"; first error: "
                + $"{larger.Product.Concat(smaller.Product).Select(r => r.FirstError).FirstOrDefault(e => e is not null)}" : ""),
        };
    }

    /// <summary>Follows nextCursor from the first activity page to page <paramref name="page"/>; null if the log is not there.</summary>
    private static async Task<string?> FindCursorAsync(ApiHost api, string token, string workspace, int page)
    {
        using var client = api.CreateClient(token);
        string? cursor = null;
        for (var i = 1; i < page; i++)
        {
            var url = $"/api/workspaces/{workspace}/activities?limit=50" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}");
            using var response = await client.GetAsync(url);
            if (!response.IsSuccessStatusCode) return null;
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            if (!body.RootElement.TryGetProperty("nextCursor", out var next) || next.ValueKind != JsonValueKind.String) return null;
            cursor = next.GetString();
        }
        return cursor;
    }
}
