using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Benchmarks;

/// <summary>
/// The benchmark is not a test (it never fails on speed), but its command must not rot: its smoke mode runs every
/// scenario at small sizes, as a process, like ./bench.sh --quick does.
/// </summary>
public sealed class BenchmarkSmokeTests
{
    [Fact]
    public async Task Quick_mode_runs_every_scenario_and_prints_a_table_row_for_each()
    {
        var output = Path.Combine(Path.GetTempPath(), "tcstudio-bench-smoke-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var result = await ProcessRunner.RunDotnetAsync(RepositoryPaths.ProjectOutput("TcStudio.Benchmarks"),
                ["--quick", "--out", output], new Dictionary<string, string?>(), TimeSpan.FromMinutes(10));

            Assert.True(result.ExitCode == 0, result.ToString());
            foreach (var scenario in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12 })
            {
                Assert.Matches($@"(?m)^\| {scenario} \| ", result.StandardOutput);
            }
            Assert.Contains("fsync=on", result.StandardOutput);
            Assert.Single(Directory.GetFiles(output, "bench-*-quick.json"));
        }
        finally
        {
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        }
    }
}
