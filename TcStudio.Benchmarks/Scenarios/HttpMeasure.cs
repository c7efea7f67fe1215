namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Runs one HTTP measurement against its raw baseline: the product through the load generator process, the baseline
/// in this process at the same concurrency, alternating which goes first, for the configured number of runs.
/// </summary>
public static class HttpMeasure
{
    /// <param name="ProductCpuUs">CPU of this process (where the API runs) per product request, µs, per run.</param>
    /// <param name="BaselineCpuUs">CPU of this process per baseline operation, µs, per run.</param>
    public sealed record Comparison(List<LoadResult> Product, List<LoadResult> Baseline, List<double> ProductCpuUs, List<double> BaselineCpuUs)
    {
        /// <summary>Bytes allocated in this process per product request / per baseline request (GC.GetTotalAllocatedBytes over the window).</summary>
        public List<double> ProductAllocatedBytes { get; } = [];
        public List<double> BaselineAllocatedBytes { get; } = [];

        /// <summary>This process's working set at the end of each product run, MB.</summary>
        public List<double> ProductWorkingSetMb { get; } = [];

        /// <summary>Whether the baseline is the hand-written HTTP server (through the same load generator) rather than in-process raw
        /// Npgsql.</summary>
        public bool HttpBaseline { get; init; }
    }

    private sealed record WindowUsage(TimeSpan Cpu, long AllocatedBytes, double WorkingSetMb);

    /// <summary>
    /// This process's CPU time over the measured window (after the warm-up, for the duration). The API runs in this
    /// process and the load generator does not, so for a product run it is the API's CPU; for a baseline run, the raw
    /// client's. Far less sensitive to a busy machine than throughput.
    /// </summary>
    private static async Task<WindowUsage> UsageOverWindowAsync(TimeSpan warmup, TimeSpan duration)
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        await Task.Delay(warmup);
        process.Refresh();
        var before = process.TotalProcessorTime;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        await Task.Delay(duration);
        process.Refresh();
        return new WindowUsage(process.TotalProcessorTime - before, GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore,
            process.WorkingSet64 / 1048576.0);
    }

    public static async Task<Comparison> CompareAsync(BenchContext context, Func<int, LoadCommand>? product,
        int clients, Func<int, long, Task>? baseline, TimeSpan? duration = null, TimeSpan? warmup = null,
        Func<int, LoadCommand>? httpBaseline = null)
    {
        var options = context.Options;
        var measured = duration ?? options.Duration;
        var warm = warmup ?? options.Warmup;
        var productRuns = new List<LoadResult>();
        var baselineRuns = new List<LoadResult>();
        var productCpu = new List<double>();
        var baselineCpu = new List<double>();
        var productBytes = new List<double>();
        var baselineBytes = new List<double>();
        var productWorkingSet = new List<double>();
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
                var usage = UsageOverWindowAsync(warm, measured);
                var result = await context.LoadGenerator.RunAsync(command);
                productRuns.Add(result);
                var used = await usage;
                productCpu.Add(used.Cpu.TotalMicroseconds / Math.Max(1, result.Requests));
                productBytes.Add(used.AllocatedBytes / (double)Math.Max(1, result.Requests));
                productWorkingSet.Add(used.WorkingSetMb);
            }

            async Task BaselineAsync()
            {
                if (baseline is null && httpBaseline is null) return;
                var usage = UsageOverWindowAsync(warm, measured);
                var result = httpBaseline is not null
                    ? await context.LoadGenerator.RunAsync(httpBaseline(clients) with
                    {
                        Clients = clients,
                        WarmupMs = (int)warm.TotalMilliseconds,
                        DurationMs = (int)measured.TotalMilliseconds,
                    })
                    : await ClosedLoop.RunAsync(clients, warm, measured, baseline!);
                baselineRuns.Add(result);
                var used = await usage;
                baselineCpu.Add(used.Cpu.TotalMicroseconds / Math.Max(1, result.Requests));
                baselineBytes.Add(used.AllocatedBytes / (double)Math.Max(1, result.Requests));
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
        var comparison = new Comparison(productRuns, baselineRuns, productCpu, baselineCpu) { HttpBaseline = httpBaseline is not null };
        comparison.ProductAllocatedBytes.AddRange(productBytes);
        comparison.BaselineAllocatedBytes.AddRange(baselineBytes);
        comparison.ProductWorkingSetMb.AddRange(productWorkingSet);
        return comparison;
    }

    /// <summary>A table row from a comparison: throughput, latency, errors, the ratio of throughputs.</summary>
    public static ResultRow Row(int scenario, string what, Comparison comparison, string baselineName,
        string? target = null, Func<Figure, Latency, double?, bool>? meets = null, string? note = null, string? unavailable = null)
    {
        var product = comparison.Product.Count == 0 ? null : Figure.Rate("req/s", comparison.Product.Select(r => r.RequestsPerSecond));
        var latency = comparison.Product.Count == 0 ? null : Latency.From(comparison.Product);
        var baseline = comparison.Baseline.Count == 0 ? null : Figure.Rate("req/s", comparison.Baseline.Select(r => r.RequestsPerSecond));
        var ratio = Stats.Ratio(product, baseline);
        var errors = new Dictionary<string, long>();
        foreach (var (kind, count) in comparison.Product.SelectMany(r => r.Errors)) errors[kind] = errors.GetValueOrDefault(kind) + count;
        var firstError = comparison.Product.Select(r => r.FirstError).FirstOrDefault(e => e is not null);
        var generatorCpu = comparison.Product.Count == 0 ? 0 : comparison.Product.Average(r => r.GeneratorCpuCores);

        Verdict verdict;
        if (unavailable is not null)
        {
            verdict = Verdict.NotAvailable;
        }
        else if (product is null)
        {
            verdict = Verdict.None;
        }
        else if (product.Median == 0 && errors.Count > 0)
        {
            verdict = Verdict.Error;
        }
        else if (product.Median == 0)
        {
            verdict = Verdict.None;
            note = (note is null ? "" : note + "; ") + "no request completed inside the measured window: it is too short for this load";
        }
        else if (meets is null)
        {
            verdict = Verdict.None;
        }
        else
        {
            verdict = meets(product, latency!, ratio) ? Verdict.Met : Verdict.Missed;
        }

        var notes = new List<string>();
        if (unavailable is not null) notes.Add(unavailable);
        if (note is not null) notes.Add(note);
        if (firstError is not null) notes.Add($"first error: {Shorten(firstError)}");
        var baselineErrors = comparison.Baseline.Sum(r => r.ErrorCount);
        if (baselineErrors > 0)
        {
            errors[$"in the baseline"] = baselineErrors;
            notes.Add($"baseline errors: {baselineErrors}, first: "
                + $"{Shorten(comparison.Baseline.Select(r => r.FirstError).First(e => e is not null)!)}");
        }
        if (comparison.HttpBaseline && comparison.ProductCpuUs.Count > 0 && comparison.BaselineCpuUs.Count > 0)
        {
            var cpuRatio = Stats.Median(comparison.ProductCpuUs) / Math.Max(1e-9, Stats.Median(comparison.BaselineCpuUs));
            notes.Add($"server CPU per request {Stats.Median(comparison.ProductCpuUs):0} µs vs baseline "
                + $"{Stats.Median(comparison.BaselineCpuUs):0} µs "
                + $"({cpuRatio:0.00}×; the server process, PostgreSQL's share not included)");
            if (comparison.ProductAllocatedBytes.Count > 0 && comparison.BaselineAllocatedBytes.Count > 0)
            {
                notes.Add($"allocated per request {Stats.Median(comparison.ProductAllocatedBytes) / 1024:0.0} KB vs baseline "
                    + $"{Stats.Median(comparison.BaselineAllocatedBytes) / 1024:0.0} KB; working set after the product's runs "
                    + $"{comparison.ProductWorkingSetMb.Min():0}–{comparison.ProductWorkingSetMb.Max():0} MB");
            }
            if (comparison.Baseline.Count > 0)
            {
                var b = Latency.From(comparison.Baseline);
                notes.Add($"baseline p50/p95/p99 {Report.Number(b.P50.Median)} / {Report.Number(b.P95.Median)} / {Report.Number(b.P99.Median)} ms");
            }
        }
        else if (comparison.ProductCpuUs.Count > 0 && comparison.BaselineCpuUs.Count > 0)
        {
            notes.Add($"CPU per request in the API's process {Stats.Median(comparison.ProductCpuUs):0} µs, per raw operation "
                + $"{Stats.Median(comparison.BaselineCpuUs):0} µs (PostgreSQL's share not included)");
        }
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
            Errors = product is null && baselineErrors == 0 ? null : errors,
            ProductCpu = comparison.ProductCpuUs.Count == 0 ? null : Figure.Time("µs CPU/request", comparison.ProductCpuUs),
            BaselineCpu = comparison.BaselineCpuUs.Count == 0 ? null : Figure.Time("µs CPU/operation", comparison.BaselineCpuUs),
            Note = notes.Count == 0 ? null : string.Join("; ", notes),
        };
    }

    public static string Clients(int n) => n == 1 ? "1 client" : $"{n} clients";

    private static string Shorten(string text) => text.Length > 240 ? text[..240] + "…" : text;
}
