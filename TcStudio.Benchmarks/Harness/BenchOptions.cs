using System.Globalization;

namespace TcStudio.Benchmarks.Harness;

/// <summary>
/// What one benchmark run does: which scenarios, how many runs of each, and the sizes. The full run uses the sizes the
/// issue names; <c>--quick</c> is the smoke mode the test suite runs (small sizes, about a second per scenario).
/// </summary>
public sealed record BenchOptions
{
    public bool Quick { get; init; }
    public IReadOnlySet<int> Scenarios { get; init; } = AllScenarios;
    public int Runs { get; init; } = 3;

    /// <summary>Measured time of each HTTP or in-process load run, and the warm-up before it.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(3);

    public int[] Concurrency { get; init; } = [1, 16, 64];

    /// <summary>Scenario 2's memory run (<c>--soak</c>): the product alone under sustained load; zero leaves it out.</summary>
    public TimeSpan Soak { get; init; } = TimeSpan.Zero;
    public int SaturationClients { get; init; } = 1000;
    public int[] SaturationPoolSizes { get; init; } = [10, 50];

    public int BulkRows { get; init; } = 100_000;

    /// <summary>Procedures in the workspace the HTTP read scenario lists and searches.</summary>
    public int ReadWorkspaceProcedures { get; init; } = 2_000;

    public ScaleSizes Scale { get; init; } = ScaleSizes.Full;

    /// <summary>Requests per measured scale run (one client: latency, not throughput).</summary>
    public TimeSpan ScaleDuration { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Live-events scenario: SSE subscribers of one workspace, activities written, and the pause between two.</summary>
    public int EventSubscribers { get; init; } = 1000;
    public int EventCount { get; init; } = 100;
    public TimeSpan EventInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    public string OutputDirectory { get; init; } = "";

    public static readonly IReadOnlySet<int> AllScenarios = new HashSet<int> { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

    /// <summary>
    /// --quick leaves out scenario 10 (hundreds of MB through the API) and 11 (a million rows and a standby);
    /// --quick --scenario 10 or 11 runs them small.
    /// </summary>
    public static readonly IReadOnlySet<int> QuickScenarios = new HashSet<int> { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12 };

    public const string Usage = """
        usage: TcStudio.Benchmarks [--quick] [--scenario N[,N...]] [--runs N] [--duration SECONDS] [--clients N,N]
                                   [--soak SECONDS] [--out DIR]
               TcStudio.Benchmarks loadgen      (the HTTP load generator; started by the benchmark itself)
               TcStudio.Benchmarks events-probe (the live-events subscribers; started by the benchmark itself)

          --quick      smoke mode: small sizes, short runs (what the test suite runs)
          --scenario   run only these scenarios (1 bulk, 2 reads, 3 writes, 4 pool, 5 scale, 6 migrations, 7 start-up,
                       8 live events, 9 backups,
                       10 large results: API memory, 11 partitioned activity log and read replicas,
                       12 row-level security on the hot reads; 10 and 11 not in --quick unless named)
          --runs       runs per measurement (default 3; the table shows their median, min and max)
          --duration   measured seconds per load run (default 10; warm-up is a third of it, at most 3 s)
          --clients    the HTTP scenarios' concurrencies, e.g. 16,64 (default 1,16,64)
          --soak       scenario 2 also runs the four reads mixed at the largest concurrency for this long, sampling
                       the working set every 10 s (e.g. 300: is memory flat over 5 minutes?); off by default
          --out        where the JSON goes (default artifacts/bench under the repository)
        """;

    public static BenchOptions Parse(string[] args)
    {
        var quick = args.Contains("--quick");
        var options = quick ? QuickDefaults : new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new BenchUsageException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--quick":
                    break;
                case "--scenario" or "--scenarios":
                    var picked = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(s => int.TryParse(s, out var n) && AllScenarios.Contains(n) ? n
                            : throw new BenchUsageException($"Unknown scenario '{s}' ({string.Join(", ", AllScenarios.Order())})."))
                        .ToHashSet();
                    options = options with { Scenarios = picked };
                    break;
                case "--runs":
                    options = options with { Runs = PositiveInt(Next(), "--runs") };
                    break;
                case "--duration":
                    var seconds = double.TryParse(Next(), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s > 0
                        ? s : throw new BenchUsageException("--duration takes a positive number of seconds.");
                    options = options with
                    {
                        Duration = TimeSpan.FromSeconds(seconds),
                        Warmup = TimeSpan.FromSeconds(Math.Min(3, seconds / 3)),
                    };
                    break;
                case "--soak":
                    options = options with { Soak = TimeSpan.FromSeconds(PositiveInt(Next(), "--soak")) };
                    break;
                case "--out":
                    options = options with { OutputDirectory = Next() };
                    break;
                case "--clients":
                    options = options with
                    {
                        Concurrency = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                            .Select(c => PositiveInt(c, "--clients")).ToArray(),
                    };
                    break;
                default:
                    throw new BenchUsageException($"Unknown argument '{args[i]}'.");
            }
        }
        return options;
    }

    private static int PositiveInt(string text, string name) =>
        int.TryParse(text, out var value) && value > 0 ? value : throw new BenchUsageException($"{name} takes a positive whole number.");

    private static readonly BenchOptions QuickDefaults = new()
    {
        Quick = true,
        Scenarios = QuickScenarios,
        Runs = 1,
        Duration = TimeSpan.FromMilliseconds(150),
        Warmup = TimeSpan.FromMilliseconds(100),
        Concurrency = [1, 8],
        SaturationClients = 100,
        SaturationPoolSizes = [10],
        BulkRows = 5_000,
        ReadWorkspaceProcedures = 200,
        Scale = ScaleSizes.Quick,
        ScaleDuration = TimeSpan.FromMilliseconds(150),
        EventSubscribers = 10,
        EventCount = 5,
        EventInterval = TimeSpan.FromMilliseconds(20),
    };
}

/// <summary>
/// The scale scenario's two databases. Both hold a "hot" workspace of the same shape (the one measured), filler
/// workspaces, and in the large one a workspace of <see cref="BigWorkspaceRows"/> procedures and activities.
/// Each size is the row count of stored_procedures and of activities.
/// </summary>
public sealed record ScaleSizes(int SmallRows, int LargeRows, int FillerWorkspaces, int HotWorkspaceRows, int BigWorkspaceRows)
{
    public static readonly ScaleSizes Full = new(10_000, 1_000_000, 1_000, 1_000, 100_000);
    public static readonly ScaleSizes Quick = new(300, 3_000, 10, 100, 1_000);
}

public sealed class BenchUsageException(string message) : Exception(message);
