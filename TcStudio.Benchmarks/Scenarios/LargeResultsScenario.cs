using System.Diagnostics;
using System.Text.Json;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 10 (issue 11): the API's memory under large results. A PostgreSQL workspace routine returns three rows of
/// 20 MB each (60 MB); it is executed many times in a row with maxRows 3 through the API (product defaults: the result
/// cap Workspaces:MaxResultBytes is 16 MiB). The process's working set (the API runs in it) is sampled throughout:
/// its peak and its level after the runs (after a full GC) against its level before, and the same executions of a
/// one-row result as the baseline. Before the cap each execution sent 60 MB and the working set grew and stayed.
/// </summary>
public sealed class LargeResultsScenario : IScenario
{
    private const int RowMegabytes = 20;

    public int Number => 10;
    public string Title => "Large results: API memory";
    public string Measures =>
        "the process working set (API in-process) while executing a routine that returns 3 rows of 20 MB many times, against the same number of "
        + "executions of a one-row result";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var executions = context.Options.Quick ? 3 : 100;
        var workload = new List<string>
        {
            $"{executions} sequential POST …/procedures/big/execute?env=dev {{maxRows: 3}}: big() returns 3 rows of "
            + $"repeat('x', {RowMegabytes} MiB) (60 MB); Workspaces:MaxResultBytes at its default (16 MiB)",
            $"baseline: {executions} executions of small() returning one short row, same workspace",
            "working set sampled every 50 ms (Process.WorkingSet64, the API runs in the benchmark's process); 'after' is read after GC.Collect",
        };
        var api = await context.ApiAsync();
        var token = await api.LoginAsync("admin", ProductData.AdminPassword);
        using var client = api.CreateClient(token);
        client.Timeout = TimeSpan.FromMinutes(2);

        var slug = "bench-large-" + Guid.NewGuid().ToString("N")[..8];
        await Expect(await client.PostAsJsonAsync("/api/workspaces", new { name = "large results", slug }));
        await Expect(await client.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "dev", server = "local", databaseName = "tcbench_large_" + slug[^8..] }));
        await Expect(await client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new
        {
            name = "big",
            sql = $"CREATE FUNCTION big() RETURNS TABLE (n int, payload text) LANGUAGE sql AS $$ SELECT g, repeat('x', {RowMegabytes} * 1024 * 1024) "
                + "FROM generate_series(1, 3) g $$;",
        }));
        await Expect(await client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "small", sql = "CREATE FUNCTION small() RETURNS TABLE (n int) LANGUAGE sql AS $$ SELECT 1 $$;" }));
        await Expect(await client.PostAsync($"/api/workspaces/{slug}/procedures/big/publish?env=dev", null));
        await Expect(await client.PostAsync($"/api/workspaces/{slug}/procedures/small/publish?env=dev", null));

        var small = await MeasureAsync(client, slug, "small", executions);
        var big = await MeasureAsync(client, slug, "big", executions);
        BenchContext.Log($"large results: before {Mb(big.Before):0} MB, peak {Mb(big.Peak):0} MB, after {Mb(big.After):0} MB; "
            + $"{big.BytesPerResponse / 1024.0:0} kB per response, truncatedReason {big.Reason}");

        const string note = "lower is better; the API stops reading at the cap and cancels the command, so a response carries at most 16 MiB";
        return new ScenarioOutcome(
        [
            new ResultRow
            {
                Scenario = Number,
                What = $"working set growth, peak during {executions} executions of a 60 MB result (MB above before)",
                Product = Figure.Time("MB", [Mb(big.Peak - big.Before)]),
                Baseline = Figure.Time("MB", [Mb(small.Peak - small.Before)]),
                BaselineName = "one-row result",
                Note = note,
            },
            new ResultRow
            {
                Scenario = Number,
                What = $"working set growth after {executions} executions of a 60 MB result, after a full GC (MB above before)",
                Product = Figure.Time("MB", [Mb(big.After - big.Before)]),
                Baseline = Figure.Time("MB", [Mb(small.After - small.Before)]),
                BaselineName = "one-row result",
                Note = $"each response {big.BytesPerResponse / 1024.0:0} kB, truncated by {big.Reason}; "
                    + $"{big.Seconds / executions * 1000:0} ms per execution",
            },
        ], workload);
    }

    private sealed record Measurement(long Before, long Peak, long After, double BytesPerResponse, string Reason, double Seconds);

    private static async Task<Measurement> MeasureAsync(HttpClient client, string slug, string routine, int executions)
    {
        var before = SettledWorkingSet();
        var peak = before;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, CurrentWorkingSet());
                try { await Task.Delay(50, sampling.Token); } catch (OperationCanceledException) { }
            }
        });
        long bytes = 0;
        var reason = "none";
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < executions; i++)
        {
            using var response = await client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/{routine}/execute?env=dev", new { maxRows = 3 });
            var body = await response.Content.ReadAsByteArrayAsync();
            if (!response.IsSuccessStatusCode)
            {
                throw new InvalidOperationException($"execute {routine}: {(int)response.StatusCode} "
                    + $"{System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(300, body.Length)))}");
            }
            bytes += body.Length;
            using var json = JsonDocument.Parse(body);
            reason = json.RootElement.GetProperty("truncatedReason").GetString() ?? "none";
        }
        stopwatch.Stop();
        await sampling.CancelAsync();
        await sampler;
        return new Measurement(before, peak, SettledWorkingSet(), (double)bytes / executions, reason, stopwatch.Elapsed.TotalSeconds);
    }

    private static long CurrentWorkingSet()
    {
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    private static long SettledWorkingSet()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        return CurrentWorkingSet();
    }

    private static double Mb(long bytes) => bytes / (1024.0 * 1024.0);

    private static async Task Expect(HttpResponseMessage response)
    {
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri?.AbsolutePath}: "
                + $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }
}
