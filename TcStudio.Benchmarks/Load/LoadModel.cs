using System.Text.Json;
using System.Text.Json.Serialization;

namespace TcStudio.Benchmarks;

/// <summary>
/// One kind of request in a mix. Path and body may hold placeholders, filled per request by the client that sends it:
/// <c>{client}</c> (the client's number), <c>{seq}</c> (its request counter), <c>{run}</c> (unique per load run),
/// <c>{page}</c> (1..Pages at random), <c>{term}</c> (one of Terms at random), <c>{slot}</c> (the request counter modulo
/// Slots: a client cycling over a few resources of its own).
/// </summary>
/// <param name="SendIfMatch">Send If-Match with the ETag this client last received for the same path.</param>
public sealed record RequestSpec(string Label, string Method, string Path, string? Body = null, int Weight = 1, bool SendIfMatch = false)
{
    public override string ToString() =>
        $"{Method} {Path}{(Body is null ? "" : " " + Body)}{(SendIfMatch ? " (If-Match: the ETag the client last received for that path)" : "")}";
}

/// <summary>What the load generator is asked to do: closed-loop clients, each on its own keep-alive connection.</summary>
public sealed record LoadCommand
{
    public required string BaseUrl { get; init; }
    public string? BearerToken { get; init; }
    public required int Clients { get; init; }
    public required int WarmupMs { get; init; }
    public required int DurationMs { get; init; }
    public required IReadOnlyList<RequestSpec> Requests { get; init; }
    public IReadOnlyList<string> Terms { get; init; } = [];
    public int Pages { get; init; } = 1;
    public int Slots { get; init; } = 1;
    public string Run { get; init; } = Guid.NewGuid().ToString("N")[..8];

    /// <summary>How many connections are opened at once (1,000 clients must not overflow the listen backlog).</summary>
    public int ConnectParallelism { get; init; } = 64;
}

/// <summary>What one load run measured: the requests completed inside the measured window and their latencies.</summary>
public sealed record LoadResult
{
    public long Requests { get; init; }
    public double Seconds { get; init; }
    public double RequestsPerSecond => Seconds > 0 ? Requests / Seconds : 0;
    public double P50Ms { get; init; }
    public double P95Ms { get; init; }
    public double P99Ms { get; init; }
    public double MaxMs { get; init; }

    /// <summary>Unexpected answers and failures by kind ("HTTP 503", "connect", "io", "timeout") in the measured window.</summary>
    public Dictionary<string, long> Errors { get; init; } = [];
    public string? FirstError { get; init; }

    /// <summary>The load generator's own CPU use during the run, in cores (so a saturated generator shows).</summary>
    public double GeneratorCpuCores { get; init; }

    [JsonIgnore]
    public long ErrorCount => Errors.Values.Sum();

    /// <summary>For measurements that must not fail (in-process baselines): throws on the first error.</summary>
    public LoadResult Check() => ErrorCount == 0 ? this
        : throw new InvalidOperationException($"{ErrorCount} operation(s) failed; first: {FirstError}");

    public static LoadResult From(List<double> latenciesMs, double seconds, Dictionary<string, long> errors, string? firstError,
        double cpuCores = 0)
    {
        var sorted = latenciesMs.ToArray();
        Array.Sort(sorted);
        return new LoadResult
        {
            Requests = sorted.Length,
            Seconds = seconds,
            P50Ms = Harness.Stats.Percentile(sorted, 50),
            P95Ms = Harness.Stats.Percentile(sorted, 95),
            P99Ms = Harness.Stats.Percentile(sorted, 99),
            MaxMs = sorted.Length == 0 ? double.NaN : sorted[^1],
            Errors = errors,
            FirstError = firstError,
            GeneratorCpuCores = cpuCores,
        };
    }
}

public static class LoadJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}
