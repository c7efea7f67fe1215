namespace TcStudio.Benchmarks.Scenarios;

/// <summary>One scenario of issue 6. Each measures the product and a baseline in the same run.</summary>
public interface IScenario
{
    int Number { get; }
    string Title { get; }

    /// <summary>What is measured and against what, one sentence for the report.</summary>
    string Measures { get; }

    Task<ScenarioOutcome> RunAsync(BenchContext context);
}

/// <summary>The rows a scenario measured and the workload it ran (request mixes, data sizes).</summary>
public sealed record ScenarioOutcome(IReadOnlyList<ResultRow> Rows, IReadOnlyList<string> Workload);
