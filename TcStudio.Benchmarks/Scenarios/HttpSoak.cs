using System.Diagnostics;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// <c>--soak SECONDS</c> (scenario 2): the product alone under the four reads mixed, at the largest <c>--clients</c>
/// concurrency, for that long, while this process's working set and managed heap are sampled every
/// <see cref="SampleEvery"/>. It answers whether memory stays flat under sustained load: the last minute's mean
/// working set against the first minute's (after the first minute, pools, caches and the JIT have settled).
/// </summary>
public static class HttpSoak
{
    public static readonly TimeSpan SampleEvery = TimeSpan.FromSeconds(10);

    /// <summary>"Flat": the last minute's mean working set at most this much above the first minute's.</summary>
    public const double FlatGrowth = 0.10;

    public static async Task<ResultRow> RunAsync(BenchContext context, int scenario, LoadCommand load)
    {
        var seconds = context.Options.Soak.TotalSeconds;
        var what = $"working set over a {seconds:0}-s run at {HttpMeasure.Clients(load.Clients)}, the four reads mixed";
        BenchContext.Log($"  soak: the four reads mixed @ {HttpMeasure.Clients(load.Clients)} for {seconds:0} s");
        var samples = new List<(double At, double WorkingSetMb, double HeapMb)>();
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        var gen2Before = GC.CollectionCount(2);
        var sampler = Task.Run(async () =>
        {
            using var process = Process.GetCurrentProcess();
            while (!stop.IsCancellationRequested)
            {
                process.Refresh();
                lock (samples)
                {
                    samples.Add((clock.Elapsed.TotalSeconds, process.WorkingSet64 / 1048576.0, GC.GetGCMemoryInfo().HeapSizeBytes / 1048576.0));
                }
                try
                {
                    await Task.Delay(SampleEvery, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        });
        var result = await context.LoadGenerator.RunAsync(load with { WarmupMs = 0, DurationMs = (int)context.Options.Soak.TotalMilliseconds });
        await stop.CancelAsync();
        await sampler;
        var gen2 = GC.CollectionCount(2) - gen2Before;

        if (samples.Count < 2) return ResultRow.NotAvailable(scenario, what, "too short to sample (--soak needs at least 20 s)");
        var minute = Math.Min(60, seconds / 3);
        var first = samples.Where(s => s.At <= minute).Select(s => s.WorkingSetMb).DefaultIfEmpty(samples[0].WorkingSetMb).Average();
        var last = samples.Where(s => s.At >= samples[^1].At - minute).Select(s => s.WorkingSetMb).Average();
        var growth = last / first - 1;
        var trace = string.Join(", ", samples.Select(s => $"{s.At:0}s {s.WorkingSetMb:0}/{s.HeapMb:0}"));
        return new ResultRow
        {
            Scenario = scenario,
            What = what,
            Product = Figure.Rate("req/s", [result.RequestsPerSecond]),
            ProductLatency = Latency.From([result]),
            Ratio = Math.Round(last / first, 2),
            RatioMeaning = "last minute's mean working set ÷ first minute's",
            Target = $"working set flat (≤ +{FlatGrowth:P0})",
            Verdict = growth <= FlatGrowth ? Verdict.Met : Verdict.Missed,
            Errors = result.Errors.Count == 0 ? null : result.Errors,
            Note = $"working set first {minute:0} s {first:0} MB, last {minute:0} s {last:0} MB ({growth:+0.0%;-0.0%}), "
                + $"range {samples.Min(s => s.WorkingSetMb):0}–{samples.Max(s => s.WorkingSetMb):0} MB; managed heap "
                + $"{samples.Min(s => s.HeapMb):0}–{samples.Max(s => s.HeapMb):0} MB; {gen2} gen-2 collections; "
                + $"{result.Requests:#,0} requests; samples (time working set/heap MB): {trace}",
        };
    }
}
