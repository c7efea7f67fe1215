using System.Diagnostics;
using System.Runtime.InteropServices;
using TcStudio.Benchmarks.Scenarios;

namespace TcStudio.Benchmarks;

/// <summary>
/// The benchmark command (README, "Performance"). <c>loadgen</c> is the HTTP load generator the benchmark starts as its
/// own child process; everything else is the benchmark itself.
/// </summary>
public static class BenchProgram
{
    public static async Task<int> Main(string[] args)
    {
        if (args is ["loadgen", ..]) return await LoadGenerator.ServeAsync();
        if (args is ["events-probe", ..]) return await EventStreamProbe.ServeAsync();
        if (args.Contains("--help") || args.Contains("-h"))
        {
            Console.WriteLine(BenchOptions.Usage);
            return 0;
        }

        BenchOptions options;
        try
        {
            options = BenchOptions.Parse(args);
        }
        catch (BenchUsageException e)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(BenchOptions.Usage);
            return 2;
        }
        return await BenchRunner.RunAsync(options);
    }
}

public static class BenchRunner
{
    public static IReadOnlyList<IScenario> AllScenarios() =>
    [
        new BulkAppendScenario(),
        new HttpReadsScenario(),
        new HttpWritesScenario(),
        new PoolSaturationScenario(),
        new ScaleScenario(),
        new MigrationsScenario(),
        new StartupScenario(),
        new LiveEventsScenario(),
        new BackupScenario(),
        new LargeResultsScenario(),
        new PartitioningAndReplicasScenario(),
        new RowLevelSecurityScenario(),
    ];

    public static async Task<int> RunAsync(BenchOptions options)
    {
        var startedAt = DateTimeOffset.Now;
        var total = Stopwatch.StartNew();
        BenchContext.Log("starting a private durable PostgreSQL cluster");
        await using var environment = await BenchEnvironment.StartAsync();
        // Ctrl+C or SIGTERM mid-run: stop and remove the private cluster rather than leave a server behind.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnInterrupt);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnInterrupt);
        void OnInterrupt(PosixSignalContext signal)
        {
            signal.Cancel = true;
            Console.Error.WriteLine("[bench] interrupted: stopping the private cluster");
            environment.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(60));
            Environment.Exit(130);
        }
        var outputDirectory = options.OutputDirectory.Length > 0
            ? Path.GetFullPath(options.OutputDirectory)
            : Path.Combine(environment.RepositoryRoot, "artifacts", "bench");
        Console.WriteLine(Report.Header(environment.Machine, options));

        var reports = new List<ScenarioReport>();
        var failed = false;
        await using (var context = new BenchContext(options, environment))
        {
            foreach (var scenario in AllScenarios().Where(s => options.Scenarios.Contains(s.Number)))
            {
                BenchContext.Log($"scenario {scenario.Number}: {scenario.Title}");
                var stopwatch = Stopwatch.StartNew();
                ScenarioOutcome outcome;
                try
                {
                    outcome = await scenario.RunAsync(context);
                }
                catch (Exception e)
                {
                    failed = true;
                    Console.Error.WriteLine(e);
                    outcome = new ScenarioOutcome(
                        [new ResultRow { Scenario = scenario.Number, What = scenario.Title, Verdict = Verdict.Error,
                            Note = $"{e.GetType().Name}: {e.Message}" }],
                        []);
                }
                if (outcome.Rows.Any(r => r.Verdict == Verdict.Error)) failed = true;
                if (options.Quick)
                {
                    // Smoke sizes say nothing about speed: no verdicts.
                    outcome = outcome with
                    {
                        Rows = outcome.Rows.Select(r => r.Verdict is Verdict.Met or Verdict.Missed ? r with { Verdict = Verdict.None } : r).ToList(),
                    };
                }
                var report = new ScenarioReport(scenario.Number, scenario.Title, scenario.Measures, outcome.Rows, outcome.Workload,
                    stopwatch.Elapsed);
                reports.Add(report);
                Console.WriteLine(Report.Scenario(report));
            }
        }

        environment.Machine.LoadAverageAtEnd = MachineInfo.ReadLoadAverage();
        Console.WriteLine();
        Console.WriteLine("# Summary");
        Console.WriteLine(Report.Header(environment.Machine, options));
        Console.Write(Report.Table(reports.SelectMany(r => r.Rows)));
        var path = await Report.WriteJsonAsync(outputDirectory, environment.Machine, options, reports, startedAt);
        Console.WriteLine();
        Console.WriteLine($"JSON: {path}");
        Console.WriteLine($"Benchmark finished in {total.Elapsed.TotalSeconds:0.0} s{(failed ? " with scenario errors (see ERROR rows)" : "")}.");
        return failed ? 1 : 0;
    }
}
