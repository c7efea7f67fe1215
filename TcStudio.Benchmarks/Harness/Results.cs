using System.Text.Json.Serialization;

namespace TcStudio.Benchmarks.Harness;

/// <summary>One figure measured in several runs: its median, min and max are what the table shows.</summary>
public sealed record Figure(string Unit, IReadOnlyList<double> Runs, bool HigherIsBetter)
{
    public double Median => Stats.Median(Runs);
    public double Min => Runs.Count == 0 ? double.NaN : Runs.Min();
    public double Max => Runs.Count == 0 ? double.NaN : Runs.Max();

    public static Figure Rate(string unit, IEnumerable<double> runs) => new(unit, runs.ToList(), HigherIsBetter: true);
    public static Figure Time(string unit, IEnumerable<double> runs) => new(unit, runs.ToList(), HigherIsBetter: false);
}

/// <summary>Latency percentiles of one measurement, each as a figure over the runs.</summary>
public sealed record Latency(Figure P50, Figure P95, Figure P99, Figure Max)
{
    public static Latency From(IReadOnlyList<LoadResult> runs) => new(
        Figure.Time("ms", runs.Select(r => r.P50Ms)),
        Figure.Time("ms", runs.Select(r => r.P95Ms)),
        Figure.Time("ms", runs.Select(r => r.P99Ms)),
        Figure.Time("ms", runs.Select(r => r.MaxMs)));
}

public enum Verdict
{
    /// <summary>No target for this row.</summary>
    None,
    Met,
    Missed,
    /// <summary>The product feature it measures is not there (yet): the row says why.</summary>
    NotAvailable,
    /// <summary>The scenario failed to run: a harness or product error, not a speed verdict.</summary>
    Error,
}

/// <summary>One line of the table: the product's figure, the baseline's in the same run, their ratio and the target.</summary>
public sealed record ResultRow
{
    public required int Scenario { get; init; }
    public required string What { get; init; }
    public Figure? Product { get; init; }
    public Latency? ProductLatency { get; init; }
    public string? BaselineName { get; init; }
    public Figure? Baseline { get; init; }
    public Latency? BaselineLatency { get; init; }

    /// <summary>Product over baseline for rates, or as stated in <see cref="RatioMeaning"/>.</summary>
    public double? Ratio { get; init; }
    public string? RatioMeaning { get; init; }
    public string? Target { get; init; }
    public Verdict Verdict { get; init; }

    /// <summary>CPU of the benchmark's process (where the API runs) per product request, and per raw operation, in µs.</summary>
    public Figure? ProductCpu { get; init; }
    public Figure? BaselineCpu { get; init; }

    /// <summary>Errors seen (HTTP status or exception kind → count), summed over the runs.</summary>
    public IReadOnlyDictionary<string, long>? Errors { get; init; }
    public string? Note { get; init; }

    [JsonIgnore]
    public string VerdictText => Verdict switch
    {
        Verdict.Met => "met",
        Verdict.Missed => "MISSED",
        Verdict.NotAvailable => "n/a",
        Verdict.Error => "ERROR",
        _ => "",
    };

    public static ResultRow NotAvailable(int scenario, string what, string why) =>
        new() { Scenario = scenario, What = what, Verdict = Verdict.NotAvailable, Note = why };
}

/// <summary>What a scenario reports: its rows and the request mix (or workload) each HTTP measurement used.</summary>
public sealed record ScenarioReport(int Number, string Title, string Measures, IReadOnlyList<ResultRow> Rows,
    IReadOnlyList<string> Workload, TimeSpan Elapsed);

public static class Stats
{
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>Nearest-rank percentile of already sorted values.</summary>
    public static double Percentile(double[] sorted, double percentile)
    {
        if (sorted.Length == 0) return double.NaN;
        var rank = (int)Math.Ceiling(percentile / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    public static double? Ratio(Figure? product, Figure? baseline) =>
        product is null || baseline is null || baseline.Median is 0 or double.NaN || double.IsNaN(product.Median)
            ? null
            : product.Median / baseline.Median;
}
