using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using TcStudio.LocalPostgres;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 7: the AppHost (<c>dotnet TcStudio.AppHost.dll</c>, the same build configuration as this benchmark) from
/// process start until it prints "TC Studio is running: API …" (PostgreSQL up, migrations and seed done, /health
/// answering 200): on a cold local cluster (first run: initdb) and on a warm one (the cluster exists, stopped).
/// Baseline: the same private cluster started alone (initdb + start, then start), i.e. PostgreSQL's share.
/// </summary>
public sealed class StartupScenario : IScenario
{
    public const string ReadyLine = "TC Studio is running: API";

    public int Number => 7;
    public string Title => "Start-up";
    public string Measures =>
        "seconds from starting the AppHost to its healthy-API line, on a cold and on a warm local cluster, against starting the same "
        + "PostgreSQL cluster alone";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var environment = context.Environment;
        var appHost = environment.ProjectOutput("TcStudio.AppHost");
        var workload = new List<string>
        {
            $"dotnet {Path.GetRelativePath(environment.RepositoryRoot, appHost)} with AppHost:PostgresStateDirectory (a new temporary directory per "
            + "cold run, reused for the warm run) and AppHost:ApiUrl (a free port); stopped with SIGTERM after each measurement (a benchmark started in the background inherits an ignored SIGINT)",
            "baseline: LocalPostgresCluster.StartAsync on a new directory (initdb + pg_ctl start), stop, start again",
        };
        if (!File.Exists(appHost))
        {
            return Unavailable($"{appHost} is not built", workload);
        }

        // Nothing else of the benchmark should compete for the machine while processes start.
        await context.StopApiAsync();
        var cold = new List<double>();
        var warm = new List<double>();
        var pgCold = new List<double>();
        var pgWarm = new List<double>();
        var root = Path.Combine(Path.GetTempPath(), "tcstudio-bench", "startup-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            for (var run = 0; run < options.Runs; run++)
            {
                var state = Path.Combine(root, $"apphost-{run}");
                var first = await StartAppHostAsync(appHost, state);
                if (first.Unavailable is not null) return Unavailable(first.Unavailable, workload);
                cold.Add(first.Seconds);
                var second = await StartAppHostAsync(appHost, state);
                if (second.Unavailable is not null) return Unavailable(second.Unavailable, workload);
                warm.Add(second.Seconds);
                await DestroyClusterAsync(state);

                var alone = new LocalPostgresCluster(new LocalPostgresOptions { StateDirectory = Path.Combine(root, $"alone-{run}") });
                try
                {
                    pgCold.Add((await alone.StartAsync()).TotalSeconds);
                    await alone.StopAsync();
                    pgWarm.Add((await alone.StartAsync()).TotalSeconds);
                }
                finally
                {
                    await alone.DestroyAsync();
                }
            }
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }

        return new ScenarioOutcome(
        [
            Row("AppHost start to healthy API, cold local cluster (first run: initdb)", cold, pgCold, "PostgreSQL alone (initdb + start)"),
            Row("AppHost start to healthy API, warm local cluster (exists, stopped)", warm, pgWarm, "PostgreSQL alone (start)"),
        ], workload);
    }

    private static ResultRow Row(string what, List<double> product, List<double> baseline, string baselineName) => new()
    {
        Scenario = 7,
        What = what,
        Product = Figure.Time("s", product),
        Baseline = Figure.Time("s", baseline),
        BaselineName = baselineName,
        Ratio = Stats.Median(product) / Stats.Median(baseline),
        RatioMeaning = "×",
        Note = "no target in the issue; the difference is the migration worker, the API's start and its health check",
    };

    private static ScenarioOutcome Unavailable(string why, List<string> workload) =>
        new([ResultRow.NotAvailable(7, "AppHost start to healthy API (cold and warm local cluster)", why)], workload);

    private sealed record StartResult(double Seconds, string? Unavailable);

    private static async Task<StartResult> StartAppHostAsync(string appHost, string stateDirectory)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(appHost)!,
        };
        start.ArgumentList.Add(appHost);
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("AppHost__", StringComparison.OrdinalIgnoreCase) || k is "ASPNETCORE_URLS").ToList())
        {
            start.Environment.Remove(key);
        }
        start.Environment["DOTNET_ENVIRONMENT"] = "Development";
        start.Environment["AppHost__PostgresStateDirectory"] = stateDirectory;
        start.Environment["AppHost__ApiUrl"] = $"http://127.0.0.1:{LocalPostgresCluster.FindFreePort()}";

        var output = new StringBuilder();
        var ready = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
        var stopwatch = Stopwatch.StartNew();
        using var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        void OnLine(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
            if (line.Contains(ReadyLine, StringComparison.Ordinal)) ready.TrySetResult(stopwatch.Elapsed.TotalSeconds);
        }

        var exited = process.WaitForExitAsync();
        var finished = await Task.WhenAny(ready.Task, exited, Task.Delay(TimeSpan.FromMinutes(3)));
        if (finished != ready.Task)
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            string text;
            lock (output) text = output.ToString().Trim();
            if (text.Contains("not wired", StringComparison.OrdinalIgnoreCase))
            {
                return new StartResult(0, $"the AppHost in this build does not start the system yet (it says: {text.Split('\n')[0]})");
            }
            throw new InvalidOperationException(
                $"The AppHost did not print '{ReadyLine}' ({(finished == exited ? $"exit code {process.ExitCode}" : "3 min timeout")}):\n{Tail(text)}");
        }

        var seconds = await ready.Task;
        // Stop it as Ctrl+C would, and wait for it to stop its children (the API, then PostgreSQL).
        SendInterrupt(process.Id);
        if (await Task.WhenAny(exited, Task.Delay(TimeSpan.FromSeconds(60))) != exited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new InvalidOperationException($"The AppHost did not stop within 60 s of SIGTERM:\n{Tail(output.ToString())}");
        }
        return new StartResult(seconds, null);
    }

    private static async Task DestroyClusterAsync(string stateDirectory)
    {
        if (!Directory.Exists(stateDirectory)) return;
        await new LocalPostgresCluster(new LocalPostgresOptions { StateDirectory = stateDirectory }).DestroyAsync();
    }

    private static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(25));

    private static void SendInterrupt(int pid)
    {
        if (kill(pid, 15) != 0) throw new InvalidOperationException($"kill({pid}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
}
