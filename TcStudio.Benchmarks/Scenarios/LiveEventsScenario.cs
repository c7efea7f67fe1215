namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 8: delivery latency of the live activity stream (GET /api/workspaces/{slug}/events) at 1,000 subscribers
/// of one workspace: an activity committed by a raw Npgsql writer, one every 100 ms, until every stream has parsed
/// it (<see cref="EventStreamProbe"/>, a process of its own). Baseline: PostgreSQL's own wake-up, NOTIFY committed
/// by the same writer and received by one raw LISTEN connection. A figure, not a test: every event must arrive
/// exactly once (anything else is an ERROR row), the latency target is the p95 under 100 ms.
/// </summary>
public sealed class LiveEventsScenario : IScenario
{
    public int Number => 8;
    public string Title => "Live events";
    public string Measures =>
        "delivery latency from an activity's commit to its event parsed by each of many SSE subscribers, against PostgreSQL's own "
        + "NOTIFY → LISTEN wake-up";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var api = await context.ApiAsync();
        var token = await context.UserTokenAsync();
        var slug = BenchContext.ReadWorkspace;
        var workspaceId = await Sql.ScalarAsync<Guid>(context.SystemConnectionString, "SELECT id FROM workspaces WHERE slug = @s", ("s", slug));
        var workload = new List<string>
        {
            $"{options.EventSubscribers:#,0} SSE streams of workspace '{slug}' as 'user' (a Member), each its own HTTP/1.1 connection, opened "
            + "(50 at a time) and 'ready' before the clock starts, in a separate probe process (System.Net.ServerSentEvents' parser)",
            $"{options.EventCount} activities, one every {options.EventInterval.TotalMilliseconds:0} ms, each an INSERT in its own transaction "
            + "(raw Npgsql, the trigger's NOTIFY, the API's listener and feed); latency = event parsed by a stream − commit "
            + "acknowledged to the writer, "
            + "every (stream, event) pair",
            "baseline: the same writer commits pg_notify at the same interval; one raw Npgsql LISTEN connection receives it",
        };

        var results = new List<EventProbeResult>();
        for (var run = 0; run < options.Runs; run++)
        {
            BenchContext.Log($"  run {run + 1}: {options.EventSubscribers} subscribers, {options.EventCount} events");
            var result = await EventStreamProbe.RunInChildProcessAsync(new EventProbeCommand
            {
                BaseUrl = api.BaseUrl,
                BearerToken = token,
                Slug = slug,
                WorkspaceId = workspaceId,
                ConnectionString = context.SystemConnectionString,
                Subscribers = options.EventSubscribers,
                Events = options.EventCount,
                IntervalMs = (int)options.EventInterval.TotalMilliseconds,
            }, TimeSpan.FromMinutes(5));
            if (result.FirstError is not null && result.Samples == 0)
            {
                return new ScenarioOutcome([new ResultRow
                {
                    Scenario = Number, What = Title, Verdict = Verdict.Error, Note = result.FirstError,
                }], workload);
            }
            results.Add(result);
        }

        var latency = new Latency(
            Figure.Time("ms", results.Select(r => r.P50Ms)), Figure.Time("ms", results.Select(r => r.P95Ms)),
            Figure.Time("ms", results.Select(r => r.P99Ms)), Figure.Time("ms", results.Select(r => r.MaxMs)));
        var baseline = new Latency(
            Figure.Time("ms", results.Select(r => r.BaselineP50Ms)), Figure.Time("ms", results.Select(r => r.BaselineP95Ms)),
            Figure.Time("ms", results.Select(r => r.BaselineP99Ms)), Figure.Time("ms", results.Select(r => r.BaselineMaxMs)));
        var missing = results.Sum(r => r.Missing);
        var duplicates = results.Sum(r => r.Duplicates);
        var errors = new Dictionary<string, long>();
        if (missing > 0) errors["events missing"] = missing;
        if (duplicates > 0) errors["events delivered twice"] = duplicates;
        var notes = new List<string>
        {
            $"{results.Sum(r => r.Samples):#,0} deliveries; subscribers connected and ready in "
                + $"{Stats.Median(results.Select(r => r.ConnectSeconds).ToList()):0.0} s (median)",
        };
        if (results.Select(r => r.FirstError).FirstOrDefault(e => e is not null) is { } firstError) notes.Add($"first error: {firstError}");

        var row = new ResultRow
        {
            Scenario = Number,
            What = $"delivery latency, {options.EventSubscribers:#,0} subscribers, 1 event per {options.EventInterval.TotalMilliseconds:0} ms",
            Product = latency.P95,
            ProductLatency = latency,
            BaselineName = "raw NOTIFY → LISTEN, 1 listener (p95)",
            Baseline = baseline.P95,
            BaselineLatency = baseline,
            Ratio = Stats.Ratio(latency.P95, baseline.P95),
            RatioMeaning = "product p95 / baseline p95",
            Target = "p95 < 100 ms, every event exactly once",
            Verdict = errors.Count > 0 ? Verdict.Error : latency.P95.Median < 100 ? Verdict.Met : Verdict.Missed,
            Errors = errors,
            Note = string.Join("; ", notes),
        };
        return new ScenarioOutcome([row], workload);
    }
}
