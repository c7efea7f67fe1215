namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Runs one HTTP measurement against its raw baseline: the product through the load generator process, the baseline
/// in this process at the same concurrency, alternating which goes first, for the configured number of runs.
/// </summary>
public static class HttpMeasure
{
    public sealed record Comparison(List<LoadResult> Product, List<LoadResult> Baseline);

    public static async Task<Comparison> CompareAsync(BenchContext context, Func<int, LoadCommand>? product,
        int clients, Func<int, long, Task>? baseline, TimeSpan? duration = null, TimeSpan? warmup = null)
    {
        var options = context.Options;
        var measured = duration ?? options.Duration;
        var warm = warmup ?? options.Warmup;
        var productRuns = new List<LoadResult>();
        var baselineRuns = new List<LoadResult>();
        for (var run = 0; run < options.Runs; run++)
        {
            async Task ProductAsync()
            {
                if (product is null) return;
                var command = product(clients) with
                {
                    Clients = clients,
                    WarmupMs = (int)warm.TotalMilliseconds,
                    DurationMs = (int)measured.TotalMilliseconds,
                };
                productRuns.Add(await context.LoadGenerator.RunAsync(command));
            }

            async Task BaselineAsync()
            {
                if (baseline is null) return;
                baselineRuns.Add(await ClosedLoop.RunAsync(clients, warm, measured, baseline));
            }

            if (run % 2 == 0)
            {
                await ProductAsync();
                await BaselineAsync();
            }
            else
            {
                await BaselineAsync();
                await ProductAsync();
            }
        }
        return new Comparison(productRuns, baselineRuns);
    }

    /// <summary>A table row from a comparison: throughput, latency, errors, the ratio of throughputs.</summary>
    public static ResultRow Row(int scenario, string what, Comparison comparison, string baselineName,
        string? target = null, Func<Figure, Latency, double?, bool>? meets = null, string? note = null, string? unavailable = null)
    {
        Figure? product = comparison.Product.Count == 0 ? null : Figure.Rate("req/s", comparison.Product.Select(r => r.RequestsPerSecond));
        var latency = comparison.Product.Count == 0 ? null : Latency.From(comparison.Product);
        Figure? baseline = comparison.Baseline.Count == 0 ? null : Figure.Rate("req/s", comparison.Baseline.Select(r => r.RequestsPerSecond));
        var ratio = Stats.Ratio(product, baseline);
        var errors = new Dictionary<string, long>();
        foreach (var (kind, count) in comparison.Product.SelectMany(r => r.Errors)) errors[kind] = errors.GetValueOrDefault(kind) + count;
        var firstError = comparison.Product.Select(r => r.FirstError).FirstOrDefault(e => e is not null);
        var generatorCpu = comparison.Product.Count == 0 ? 0 : comparison.Product.Average(r => r.GeneratorCpuCores);

        Verdict verdict;
        if (unavailable is not null) verdict = Verdict.NotAvailable;
        else if (product is null) verdict = Verdict.None;
        else if (product.Median == 0 && errors.Count > 0) verdict = Verdict.Error;
        else if (product.Median == 0)
        {
            verdict = Verdict.None;
            note = (note is null ? "" : note + "; ") + "no request completed inside the measured window: it is too short for this load";
        }
        else if (meets is null) verdict = Verdict.None;
        else verdict = meets(product, latency!, ratio) ? Verdict.Met : Verdict.Missed;

        var notes = new List<string>();
        if (unavailable is not null) notes.Add(unavailable);
        if (note is not null) notes.Add(note);
        if (firstError is not null) notes.Add($"first error: {Shorten(firstError)}");
        if (product is not null && generatorCpu > 0) notes.Add($"load generator used {generatorCpu:0.00} cores");
        return new ResultRow
        {
            Scenario = scenario,
            What = what,
            Product = product,
            ProductLatency = latency,
            Baseline = baseline,
            BaselineLatency = comparison.Baseline.Count == 0 ? null : Latency.From(comparison.Baseline),
            BaselineName = baselineName,
            Ratio = ratio,
            Target = target,
            Verdict = verdict,
            Errors = product is null ? null : errors,
            Note = notes.Count == 0 ? null : string.Join("; ", notes),
        };
    }

    public static string Clients(int n) => n == 1 ? "1 client" : $"{n} clients";

    private static string Shorten(string text) => text.Length > 240 ? text[..240] + "…" : text;
}
