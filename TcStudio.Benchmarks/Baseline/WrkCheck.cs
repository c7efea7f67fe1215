using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using TcStudio.Benchmarks.Scenarios;

namespace TcStudio.Benchmarks.Baseline;

/// <summary>
/// The in-house load generator checked by an external one: Debian's <c>wrk</c> (installed by bench.sh when missing;
/// not in --quick) drives two read routes, product then baseline, at 16 connections with scripts/bench-wrk.lua
/// (the bearer token, the paths rotated through). Its figures go beside the load generator's.
/// </summary>
public static partial class WrkCheck
{
    public static async Task<IReadOnlyList<ResultRow>> RunAsync(BenchContext context, int scenario, string productUrl, string baselineUrl,
        string token)
    {
        if (context.Options.Quick) return [];
        var script = Path.Combine(context.Environment.RepositoryRoot, "scripts", "bench-wrk.lua");
        if (FindWrk() is not { } wrk)
        {
            return [new ResultRow { Scenario = scenario, What = "wrk cross-check", Verdict = Verdict.NotAvailable,
                Note = "wrk is not installed (bench.sh installs it with apt-get)" }];
        }
        var slug = BenchContext.ReadWorkspace;
        var pages = context.PagesOf(context.Options.ReadWorkspaceProcedures);
        (string Label, string[] Paths)[] routes =
        [
            ("GET workspace", [$"/api/workspaces/{slug}"]),
            ("procedures list page of 50",
                Enumerable.Range(1, pages).Select(p => $"/api/workspaces/{slug}/procedures?page={p}&pageSize=50").ToArray()),
        ];
        var rows = new List<ResultRow>();
        foreach (var (label, paths) in routes)
        {
            BenchContext.Log($"  wrk: {label} @ 16 connections");
            var product = new List<LoadResult>();
            var baseline = new List<LoadResult>();
            for (var run = 0; run < context.Options.Runs; run++)
            {
                var first = run % 2 == 0 ? productUrl : baselineUrl;
                var second = run % 2 == 0 ? baselineUrl : productUrl;
                var a = await RunWrkAsync(wrk, script, first, token, paths, context.Options);
                var b = await RunWrkAsync(wrk, script, second, token, paths, context.Options);
                (first == productUrl ? product : baseline).Add(a);
                (second == productUrl ? product : baseline).Add(b);
            }
            rows.Add(HttpMeasure.Row(scenario, $"{label}, 16 connections, measured by wrk (p95 column: wrk's p90)",
                new HttpMeasure.Comparison(product, baseline, [], []) { HttpBaseline = true }, "HTTP baseline (wrk)"));
        }
        return rows;
    }

    private static string? FindWrk() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "wrk")).FirstOrDefault(File.Exists);

    private static async Task<LoadResult> RunWrkAsync(string wrk, string script, string url, string token, string[] paths, BenchOptions options)
    {
        // wrk has no warm-up: a run of the warm-up's length first, not counted.
        var seconds = (int)Math.Max(1, Math.Round(options.Duration.TotalSeconds));
        await RunProcessAsync(wrk, ["-t2", "-c16", $"-d{Math.Max(1, (int)options.Warmup.TotalSeconds)}s", "-s", script, url, "--", token, .. paths]);
        var output = await RunProcessAsync(wrk, ["-t2", "-c16", $"-d{seconds}s", "--latency", "-s", script, url, "--", token, .. paths]);
        var rate = double.Parse(RequestsPerSecond().Match(output).Groups[1].Value, CultureInfo.InvariantCulture);
        double Percentile(string p)
        {
            var match = Regex.Match(output, $@"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", RegexOptions.Multiline);
            if (!match.Success) return double.NaN;
            var value = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            return match.Groups[2].Value switch { "us" => value / 1000, "s" => value * 1000, _ => value };
        }
        var errors = new Dictionary<string, long>();
        if (Non2xx().Match(output) is { Success: true } bad) errors["non-2xx"] = long.Parse(bad.Groups[1].Value, CultureInfo.InvariantCulture);
        if (SocketErrors().Match(output) is { Success: true } socket)
        {
            var count = socket.Groups.Values.Skip(1).Sum(g => long.Parse(g.Value, CultureInfo.InvariantCulture));
            if (count > 0) errors["socket"] = count;
        }
        return new LoadResult
        {
            Requests = (long)(rate * seconds),
            Seconds = seconds,
            P50Ms = Percentile("50"),
            P95Ms = Percentile("90"),
            P99Ms = Percentile("99"),
            MaxMs = double.NaN,
            Errors = errors,
            FirstError = errors.Count == 0 ? null : string.Join(", ", errors.Select(e => $"{e.Key}: {e.Value}")),
        };
    }

    private static async Task<string> RunProcessAsync(string file, string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"wrk exited {process.ExitCode}: {await stderr}");
        return await stdout;
    }

    [GeneratedRegex(@"Requests/sec:\s+([\d.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"Non-2xx or 3xx responses:\s+(\d+)")]
    private static partial Regex Non2xx();

    [GeneratedRegex(@"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")]
    private static partial Regex SocketErrors();
}
