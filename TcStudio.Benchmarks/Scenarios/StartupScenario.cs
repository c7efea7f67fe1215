using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using TcStudio.LocalPostgres;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 7: the Aspire AppHost (<c>dotnet TcStudio.AppHost.dll</c>, the same build configuration as this
/// benchmark, with the dashboard and DCP, PostgreSQL from the local binaries) from process start until the API's
/// <c>/health</c> answers 200 (PostgreSQL up, migrations and seed done, the API started and healthy): on a cold local
/// cluster (first run: initdb) and on a warm one (the cluster exists, stopped). Baseline: the same private cluster
/// started alone (initdb + start, then start), i.e. PostgreSQL's share.
/// </summary>
public sealed partial class StartupScenario : IScenario
{
    private static readonly TimeSpan StartLimit = TimeSpan.FromMinutes(5);

    public int Number => 7;
    public string Title => "Start-up";
    public string Measures =>
        "seconds from starting the Aspire AppHost to the API's /health answering 200, on a cold and on a warm local cluster, "
        + "against starting the same PostgreSQL cluster alone";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var environment = context.Environment;
        var appHost = environment.ProjectOutput("TcStudio.AppHost");
        var workload = new List<string>
        {
            $"dotnet {Path.GetRelativePath(environment.RepositoryRoot, appHost)} (Development, dashboard on, DCP ports randomized) "
            + "with AppHost:Postgres:Mode=local and AppHost:Postgres:StateDirectory (a new temporary directory per cold run, "
            + "reused for the warm run), the secrets given as parameters; timed to the first 200 from the API's /health; "
            + "stopped with SIGTERM after each measurement (a benchmark started in the background inherits an ignored SIGINT)",
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
            Row("Aspire AppHost start to API /health 200, cold local cluster (first run: initdb)", cold, pgCold, "PostgreSQL alone (initdb + start)"),
            Row("Aspire AppHost start to API /health 200, warm local cluster (exists, stopped)", warm, pgWarm, "PostgreSQL alone (start)"),
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
        Note = "no target in the issue; the difference is DCP and the dashboard starting, the migration worker, the API's start and its health check",
    };

    private static ScenarioOutcome Unavailable(string why, List<string> workload) =>
        new([ResultRow.NotAvailable(7, "Aspire AppHost start to API /health 200 (cold and warm local cluster)", why)], workload);

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
                     || k.StartsWith("AppHost__", StringComparison.OrdinalIgnoreCase)
                         || k.StartsWith("Parameters__", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("ASPIRE_", StringComparison.OrdinalIgnoreCase)
                         || k.StartsWith("ASPNETCORE_", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }
        // What the http launch profile sets, on free ports; the API's own port is randomized by DCP.
        start.Environment["DOTNET_ENVIRONMENT"] = "Development";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{LocalPostgresCluster.FindFreePort()}";
        start.Environment["ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL"] = $"http://127.0.0.1:{LocalPostgresCluster.FindFreePort()}";
        start.Environment["ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL"] = $"http://127.0.0.1:{LocalPostgresCluster.FindFreePort()}";
        start.Environment["ASPIRE_ALLOW_UNSECURED_TRANSPORT"] = "true";
        start.Environment["DcpPublisher__RandomizePorts"] = "true";
        start.Environment["AppHost__Postgres__Mode"] = "local";
        start.Environment["AppHost__Postgres__StateDirectory"] = stateDirectory;
        start.Environment["AppHost__SqlServer__Mode"] = "none";
        // Given, so the AppHost generates nothing into the developer's user secrets.
        foreach (var parameter in new[] { "seed-admin-password", "seed-user-password", "api-signing-key" })
        {
            start.Environment[$"Parameters__{parameter}"] = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        }

        var output = new StringBuilder();
        var apiUrl = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var stopwatch = Stopwatch.StartNew();
        using var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        void OnLine(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
            if (ReadyUrl().Match(line) is { Success: true } match) apiUrl.TrySetResult(new Uri(match.Groups[1].Value));
        }

        try
        {
            var exited = process.WaitForExitAsync();
            // Generous: on a machine shared with other builds an Aspire start (DCP, the dashboard, initdb, three
            // processes run through `dotnet run`) has taken minutes.
            var finished = await Task.WhenAny(apiUrl.Task, exited, Task.Delay(StartLimit));
            if (finished != apiUrl.Task)
            {
                throw new InvalidOperationException(
                    "The AppHost did not report the API healthy ("
                    + (finished == exited ? $"exit code {process.ExitCode}" : $"{StartLimit.TotalMinutes:0} min timeout")
                    + $"):\n{Tail(Text(output))}");
            }
            // The AppHost reports the API once its own health check passed; the figure is the first 200 seen from here.
            using var http = new HttpClient { BaseAddress = await apiUrl.Task, Timeout = TimeSpan.FromSeconds(5) };
            while (true)
            {
                try
                {
                    using var response = await http.GetAsync("/health");
                    if (response.StatusCode == System.Net.HttpStatusCode.OK) break;
                }
                catch (HttpRequestException)
                {
                    // not answering yet
                }
                if (stopwatch.Elapsed > StartLimit) throw new InvalidOperationException("The API's /health never answered 200.");
                await Task.Delay(50);
            }
            var seconds = stopwatch.Elapsed.TotalSeconds;

            // Stop it as Ctrl+C would, and wait for it to stop its resources (the services, then PostgreSQL).
            SendTerminate(process.Id);
            if (await Task.WhenAny(exited, Task.Delay(TimeSpan.FromSeconds(60))) != exited)
            {
                throw new InvalidOperationException($"The AppHost did not stop within 60 s of SIGTERM:\n{Tail(Text(output))}");
            }
            return new StartResult(seconds, null);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
        }
    }

    private static string Text(StringBuilder output)
    {
        lock (output) return output.ToString().Trim();
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"TC Studio is running: API (\S+)")]
    private static partial System.Text.RegularExpressions.Regex ReadyUrl();

    private static async Task DestroyClusterAsync(string stateDirectory)
    {
        if (!Directory.Exists(stateDirectory)) return;
        await new LocalPostgresCluster(new LocalPostgresOptions { StateDirectory = stateDirectory }).DestroyAsync();
    }

    private static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(25));

    private static void SendTerminate(int pid)
    {
        if (kill(pid, 15) != 0) throw new InvalidOperationException($"kill({pid}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
}
