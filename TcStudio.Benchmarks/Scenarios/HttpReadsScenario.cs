using TcStudio.Benchmarks.Baseline;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 2: reads through the HTTP API at 1, 16 and 64 concurrent clients (closed loop, keep-alive), against the
/// hand-written HTTP baseline (<see cref="Baseline.BaselineServer"/>: ASP.NET Core minimal, raw Npgsql, the same
/// routes, response bytes, token validation, app role and row-level-security settings) driven by the same load
/// generator over the same data, alternating which goes first. The caller is the seeded "user", a Member of the
/// workspace; every request carries its bearer token.
/// </summary>
public sealed class HttpReadsScenario : IScenario
{
    public int Number => 2;
    public string Title => "Reads through the HTTP API";
    public string Measures =>
        "requests/s and p50/p95/p99 latency of API reads at each concurrency (load generator process → Kestrel → EF → PostgreSQL), "
        + "against a hand-written ASP.NET Core + Npgsql server serving the same routes with the same bytes, same load generator, same run; "
        + "CPU and allocations per request of the server process";

    public static readonly TimeSpan JitWarmup = TimeSpan.FromSeconds(5);

    public sealed record ReadEndpoint(string Label, RequestSpec Request, string ProbePath);

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        await context.SystemAsync();
        var api = await context.ApiAsync();
        var token = await context.UserTokenAsync();
        var baseline = await context.BaselineAsync();
        var slug = BenchContext.ReadWorkspace;
        var pages = context.PagesOf(options.ReadWorkspaceProcedures);
        var terms = DataGenerator.SearchTerms;

        ReadEndpoint[] endpoints =
        [
            new("GET workspace", new RequestSpec("workspace", "GET", $"/api/workspaces/{slug}"), $"/api/workspaces/{slug}"),
            new("procedures list page of 50", new RequestSpec("list", "GET", $"/api/workspaces/{slug}/procedures?page={{page}}&pageSize=50"),
                $"/api/workspaces/{slug}/procedures?page=1&pageSize=50"),
            new("procedures full-text search", new RequestSpec("search", "GET", $"/api/workspaces/{slug}/procedures?search={{term}}"),
                $"/api/workspaces/{slug}/procedures?search=orders"),
            new("activity log first page", new RequestSpec("activities", "GET", $"/api/workspaces/{slug}/activities"),
                $"/api/workspaces/{slug}/activities"),
        ];

        var rows = new List<ResultRow>();
        var workload = new List<string>
        {
            $"data: workspace {slug} with {options.ReadWorkspaceProcedures:#,0} procedures and as many activity rows; caller "
                + "'user' (Member), bearer token",
            $"each client: one keep-alive connection, next request as soon as the answer is read; {options.Warmup.TotalSeconds:0.##} s warm-up, "
            + $"{options.Duration.TotalSeconds:0.##} s measured, {options.Runs} run(s) per figure; product and baseline alternate which goes first",
            "both servers run in the benchmark's process (server GC), connect as the app role with row-level security on, and send "
            + "the same settings statement with each statement; CPU per request is the process's CPU over the measured window",
        };
        rows.Add(await BaselineConformance.CheckReadsAsync(Number, api.BaseUrl, baseline.BaseUrl, token,
            endpoints.Select(e => e.ProbePath).Append($"/api/workspaces/{slug}/procedures?page=2&pageSize=50")
                .Append($"/api/workspaces/{slug}/activities?limit=5").ToList()));
        if (!options.Quick)
        {
            // The JIT's tiers (and dynamic PGO) take many seconds of load to settle, longer than a run's warm-up: every
            // route is driven on both servers once first, untimed, so the runs compare steady states.
            BenchContext.Log($"  warming both servers up: every route, 16 clients, {JitWarmup.TotalSeconds:0} s each");
            foreach (var endpoint in endpoints)
            {
                foreach (var url in new[] { api.BaseUrl, baseline.BaseUrl })
                {
                    await context.LoadGenerator.RunAsync(new LoadCommand
                    {
                        BaseUrl = url, BearerToken = token, Clients = 16, WarmupMs = (int)JitWarmup.TotalMilliseconds, DurationMs = 1,
                        Requests = [endpoint.Request], Pages = pages, Terms = terms,
                    });
                }
            }
        }
        foreach (var endpoint in endpoints)
        {
            var (available, detail) = await api.ProbeAsync(token, HttpMethod.Get, endpoint.ProbePath);
            string statements;
            using (var probe = new StatementProbe(BenchEnvironment.SystemDatabase))
            {
                if (available) await api.ProbeAsync(token, HttpMethod.Get, endpoint.ProbePath);
                statements = probe.Summary();
            }
            var mix = endpoint.Request.Path.Contains("{page}") ? $" (page 1–{pages} at random)"
                : endpoint.Request.Path.Contains("{term}") ? $" (term one of {string.Join(", ", terms)}, at random)" : "";
            workload.Add($"{endpoint.Label}: 100% {endpoint.Request}{mix}; "
                + (available ? $"the product sends {statements} per request" : detail));

            foreach (var clients in options.Concurrency)
            {
                BenchContext.Log($"  {endpoint.Label} @ {HttpMeasure.Clients(clients)}");
                LoadCommand Load(string baseUrl) => new()
                {
                    BaseUrl = baseUrl, BearerToken = token, Clients = clients, WarmupMs = 0, DurationMs = 0,
                    Requests = [endpoint.Request], Pages = pages, Terms = terms,
                };
                var comparison = await HttpMeasure.CompareAsync(context, available ? _ => Load(api.BaseUrl) : null, clients, baseline: null,
                    httpBaseline: _ => Load(baseline.BaseUrl));
                var (target, meets) = clients switch
                {
                    16 => ("p95 < 10 ms, ≥0.8× baseline",
                        (Func<Figure, Latency, double?, bool>)((_, latency, ratio) => latency.P95.Median < 10 && ratio >= 0.8)),
                    64 => ("≥0.8× baseline", (_, _, ratio) => ratio >= 0.8),
                    _ => ((string?)null, (Func<Figure, Latency, double?, bool>?)null),
                };
                rows.Add(HttpMeasure.Row(Number, $"{endpoint.Label}, {HttpMeasure.Clients(clients)}", comparison, "HTTP baseline",
                    target, meets, unavailable: available ? null : detail));
            }
        }
        rows.AddRange(await WrkCheck.RunAsync(context, Number, api.BaseUrl, baseline.BaseUrl, token));
        if (options.Soak > TimeSpan.Zero)
        {
            rows.Add(await HttpSoak.RunAsync(context, Number, new LoadCommand
            {
                BaseUrl = api.BaseUrl, BearerToken = token, Clients = options.Concurrency.Max(), WarmupMs = 0, DurationMs = 0,
                Requests = endpoints.Select(e => e.Request).ToList(), Pages = pages, Terms = terms,
            }));
        }
        return new ScenarioOutcome(rows, workload);
    }

    public static string FirstWords(string sql)
    {
        var flat = string.Join(' ', sql.Split(['\n', '\r', ' '], StringSplitOptions.RemoveEmptyEntries));
        return flat.Length > 48 ? flat[..48] + "…" : flat;
    }
}
