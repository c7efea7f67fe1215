using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TcStudio.Benchmarks.Harness;

/// <summary>Prints the machine header and the table (Markdown, so it pastes into the README) and writes the JSON.</summary>
public static class Report
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static string Header(MachineInfo machine, BenchOptions options)
    {
        var pg = machine.PostgresSettings;
        return new StringBuilder()
            .AppendLine($"TC Studio benchmark{(options.Quick ? " (--quick: smoke sizes, figures not meaningful)" : "")}, "
                + $"{DateTimeOffset.Now:yyyy-MM-dd HH:mm zzz}")
            .AppendLine($"  machine:    {machine.Cores} cores ({machine.Cpu}), {machine.MemoryGiB:0.0} GiB, {machine.Os}")
            .AppendLine($"  load avg:   {machine.LoadAverageAtStart} at "
                + $"start{(machine.LoadAverageAtEnd.Length > 0 ? $", {machine.LoadAverageAtEnd} at end" : "")} (1/5/15 min; above {machine.Cores} "
                + "means other work competed)")
            .AppendLine($"  runtime:    {machine.Runtime}, {machine.Build} build; open-file limit {machine.OpenFileLimit}")
            .AppendLine($"  PostgreSQL: {machine.PostgresVersion}; private cluster, product defaults: fsync={pg.GetValueOrDefault("fsync")}, "
                + $"synchronous_commit={pg.GetValueOrDefault("synchronous_commit")}, full_page_writes={pg.GetValueOrDefault("full_page_writes")}, "
                + $"wal_sync_method={pg.GetValueOrDefault("wal_sync_method")}, shared_buffers={pg.GetValueOrDefault("shared_buffers")}, "
                + $"max_connections={pg.GetValueOrDefault("max_connections")}")
            .AppendLine($"  API:        Production environment, in this process on Kestrel; {ApiHost.RateLimitDescription}")
            .AppendLine($"  runs:       {options.Runs} per figure (median [min–max]); load runs {options.Duration.TotalSeconds:0.##} s after "
                + $"{options.Warmup.TotalSeconds:0.##} s warm-up")
            .ToString();
    }

    public static string Scenario(ScenarioReport report)
    {
        var text = new StringBuilder()
            .AppendLine()
            .AppendLine($"## {report.Number}. {report.Title} ({report.Elapsed.TotalSeconds:0.0} s)")
            .AppendLine($"Measures: {report.Measures}");
        if (report.Workload.Count > 0)
        {
            text.AppendLine("Workload / request mix:");
            foreach (var line in report.Workload) text.AppendLine($"  - {line}");
        }
        text.Append(Table(report.Rows));
        var notes = report.Rows.Where(r => r.Note is not null).ToList();
        foreach (var row in notes) text.AppendLine($"  note ({row.What}): {row.Note}");
        return text.ToString();
    }

    public static string Table(IEnumerable<ResultRow> rows)
    {
        var text = new StringBuilder()
            .AppendLine("| # | measurement | product | baseline | ratio | latency p50 / p95 / p99 ms | errors | target | verdict |")
            .AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var row in rows)
        {
            var baseline = row.Baseline is null ? row.BaselineName ?? "" : $"{Format(row.Baseline)} {row.BaselineName}";
            var ratio = row.Ratio is { } r ? r.ToString(r >= 100 ? "0" : r >= 10 ? "0.0" : "0.00", Invariant)
                + (row.RatioMeaning is null ? "" : $" {row.RatioMeaning}") : "";
            var latency = row.ProductLatency is null ? ""
                : Percentiles(row.ProductLatency) + (row.BaselineLatency is null ? "" : $" (baseline {Percentiles(row.BaselineLatency)})");
            var errors = row.Errors is null ? "" : row.Errors.Count == 0 ? "0" : string.Join(", ", row.Errors.Select(e => $"{e.Value} {e.Key}"));
            var product = row.Product is null ? (row.Verdict == Verdict.NotAvailable ? "not available" : row.Verdict == Verdict.Error ? "failed" : "")
                : Format(row.Product);
            text.AppendLine($"| {row.Scenario} | {row.What} | {product} | {baseline} | {ratio} | {latency} | {errors} | "
                + $"{row.Target} | {row.VerdictText} |");
        }
        return text.ToString();
    }

    private static string Percentiles(Latency latency) =>
        $"{Number(latency.P50.Median)} / {Number(latency.P95.Median)} / {Number(latency.P99.Median)}";

    public static string Format(Figure figure)
    {
        var median = Number(figure.Median);
        return figure.Runs.Count > 1
            ? $"{median} {figure.Unit} [{Number(figure.Min)}–{Number(figure.Max)}]"
            : $"{median} {figure.Unit}";
    }

    public static string Number(double value)
    {
        if (double.IsNaN(value)) return "–";
        var abs = Math.Abs(value);
        return abs switch
        {
            >= 10_000 => value.ToString("#,0", Invariant),
            >= 100 => value.ToString("0", Invariant),
            >= 10 => value.ToString("0.0", Invariant),
            >= 1 => value.ToString("0.00", Invariant),
            _ => value.ToString("0.000", Invariant),
        };
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public static async Task<string> WriteJsonAsync(string directory, MachineInfo machine, BenchOptions options,
        IReadOnlyList<ScenarioReport> scenarios, DateTimeOffset startedAt)
    {
        Directory.CreateDirectory(directory);
        var document = new
        {
            startedAt,
            finishedAt = DateTimeOffset.Now,
            machine,
            options = new
            {
                options.Quick,
                options.Runs,
                durationSeconds = options.Duration.TotalSeconds,
                warmupSeconds = options.Warmup.TotalSeconds,
                options.Concurrency,
                options.SaturationClients,
                options.SaturationPoolSizes,
                options.BulkRows,
                options.Scale,
                scenarios = options.Scenarios.Order(),
            },
            scenarios = scenarios.Select(s => new
            {
                s.Number,
                s.Title,
                s.Measures,
                s.Workload,
                elapsedSeconds = s.Elapsed.TotalSeconds,
                rows = s.Rows.Select(r => new
                {
                    r.What,
                    product = Summarize(r.Product),
                    productLatencyMs = Summarize(r.ProductLatency),
                    r.BaselineName,
                    baseline = Summarize(r.Baseline),
                    baselineLatencyMs = Summarize(r.BaselineLatency),
                    productCpu = Summarize(r.ProductCpu),
                    baselineCpu = Summarize(r.BaselineCpu),
                    r.Ratio,
                    r.RatioMeaning,
                    r.Target,
                    verdict = r.Verdict,
                    r.Errors,
                    r.Note,
                }),
            }),
        };
        var name = $"bench-{startedAt:yyyyMMdd-HHmmss}{(options.Quick ? "-quick" : "")}.json";
        var path = Path.Combine(directory, name);
        var json = JsonSerializer.Serialize(document, Json);
        await File.WriteAllTextAsync(path, json);
        await File.WriteAllTextAsync(Path.Combine(directory, options.Quick ? "latest-quick.json" : "latest.json"), json);
        return path;
    }

    private static object? Summarize(Figure? figure) =>
        figure is null ? null : new { figure.Unit, figure.Median, figure.Min, figure.Max, figure.Runs };

    private static object? Summarize(Latency? latency) =>
        latency is null ? null : new
        {
            p50 = Summarize(latency.P50),
            p95 = Summarize(latency.P95),
            p99 = Summarize(latency.P99),
            max = Summarize(latency.Max),
        };
}
