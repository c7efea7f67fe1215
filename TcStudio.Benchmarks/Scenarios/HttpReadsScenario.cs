namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 2: reads through the HTTP API at 1, 16 and 64 concurrent clients (closed loop, keep-alive), against the
/// same queries issued with raw Npgsql in this process at the same concurrency. The caller is the seeded "user", a
/// Member of the workspace; every request carries its bearer token.
/// </summary>
public sealed class HttpReadsScenario : IScenario
{
    public int Number => 2;
    public string Title => "Reads through the HTTP API";
    public string Measures =>
        "requests/s and p50/p95/p99 latency of API reads at each concurrency (load generator process → Kestrel → EF → PostgreSQL), "
        + "against the same statements issued with raw Npgsql in-process at the same concurrency";

    public sealed record ReadEndpoint(string Label, RequestSpec Request, string ProbePath, Func<RawQueries, Guid, Task> Raw, string[] RawStatements);

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        await context.SystemAsync();
        var api = await context.ApiAsync();
        var token = await context.UserTokenAsync();
        var users = await DataGenerator.ReadSeededUsersAsync(context.SystemConnectionString);
        var slug = BenchContext.ReadWorkspace;
        var pages = context.PagesOf(options.ReadWorkspaceProcedures);
        var terms = DataGenerator.SearchTerms;
        await using var dataSource = context.RawDataSource(context.SystemConnectionString);
        var raw = new RawQueries(dataSource);

        ReadEndpoint[] endpoints =
        [
            new("GET workspace", new RequestSpec("workspace", "GET", $"/api/workspaces/{slug}"), $"/api/workspaces/{slug}",
                (q, user) => q.GetWorkspaceAsync(slug, user), RawQueries.WorkspaceGetStatements),
            new("procedures list page of 50", new RequestSpec("list", "GET", $"/api/workspaces/{slug}/procedures?page={{page}}&pageSize=50"),
                $"/api/workspaces/{slug}/procedures?page=1&pageSize=50",
                (q, user) => q.ListProceduresAsync(slug, user, Random.Shared.Next(pages) + 1), RawQueries.ListStatements),
            new("procedures full-text search", new RequestSpec("search", "GET", $"/api/workspaces/{slug}/procedures?search={{term}}"),
                $"/api/workspaces/{slug}/procedures?search=orders",
                (q, user) => q.SearchProceduresAsync(slug, user, terms[Random.Shared.Next(terms.Count)]), RawQueries.SearchStatements),
        ];

        var rows = new List<ResultRow>();
        var workload = new List<string>
        {
            $"data: workspace {slug} with {options.ReadWorkspaceProcedures:#,0} procedures and as many activity rows; caller 'user' (Member), bearer token",
            $"each client: one keep-alive connection, next request as soon as the answer is read; {options.Warmup.TotalSeconds:0.##} s warm-up, "
            + $"{options.Duration.TotalSeconds:0.##} s measured, {options.Runs} run(s) per figure",
        };
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
                + (available ? $"the product sends {statements} per request" : detail)
                + $"; baseline sends {endpoint.RawStatements.Length} statements ({string.Join(", ", endpoint.RawStatements.Select(FirstWords))})");

            foreach (var clients in options.Concurrency)
            {
                BenchContext.Log($"  {endpoint.Label} @ {HttpMeasure.Clients(clients)}");
                var comparison = await HttpMeasure.CompareAsync(context,
                    available ? _ => new LoadCommand
                    {
                        BaseUrl = api.BaseUrl, BearerToken = token, Clients = clients, WarmupMs = 0, DurationMs = 0,
                        Requests = [endpoint.Request], Pages = pages, Terms = terms,
                    } : null,
                    clients, (_, _) => endpoint.Raw(raw, users.UserId));
                var (target, meets) = clients switch
                {
                    16 => ("p95 < 10 ms", (Func<Figure, Latency, double?, bool>)((_, latency, _) => latency.P95.Median < 10)),
                    64 => ("≥0.5× raw req/s", (_, _, ratio) => ratio >= 0.5),
                    _ => ((string?)null, (Func<Figure, Latency, double?, bool>?)null),
                };
                rows.Add(HttpMeasure.Row(Number, $"{endpoint.Label}, {HttpMeasure.Clients(clients)}", comparison, "raw Npgsql",
                    target, meets, unavailable: available ? null : detail));
            }
        }
        return new ScenarioOutcome(rows, workload);
    }

    public static string FirstWords(string sql)
    {
        var flat = string.Join(' ', sql.Split(['\n', '\r', ' '], StringSplitOptions.RemoveEmptyEntries));
        return flat.Length > 48 ? flat[..48] + "…" : flat;
    }
}
