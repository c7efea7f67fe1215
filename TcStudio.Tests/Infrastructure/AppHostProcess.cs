using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using TcStudio.AppHost;
using TcStudio.AppHost.LocalPostgres;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// The AppHost run as a real process, the way a developer runs it, with its own API port and PostgreSQL state
/// directory. Every process it starts inherits a unique marker variable, so a test can find any that are left over.
/// Disposing kills whatever is still running (the AppHost, its services); the state directory is the caller's
/// (see <see cref="AppHostStateDirectory"/>).
/// </summary>
public sealed partial class AppHostProcess : IAsyncDisposable
{
    public const string RunMarkerVariable = "TCSTUDIO_TEST_APPHOST_RUN";
    public const string RunningLine = "TC Studio is running: API ";

    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private AppHostProcess(Process process, string stateDirectory, int apiPort, string runMarker)
    {
        _process = process;
        StateDirectory = stateDirectory;
        ApiPort = apiPort;
        RunMarker = runMarker;
    }

    public static string Dll => RepositoryPaths.ProjectOutput("TcStudio.AppHost");

    public string StateDirectory { get; }
    public int ApiPort { get; }
    public string RunMarker { get; }
    public int Id => _process.Id;
    public Stopwatch SinceStart { get; } = Stopwatch.StartNew();

    /// <summary>Everything the AppHost printed so far, stdout and stderr in arrival order.</summary>
    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    public static AppHostProcess Start(string stateDirectory, IDictionary<string, string?>? environment = null)
    {
        var apiPort = LocalPostgresCluster.FindFreePort();
        var runMarker = Guid.NewGuid().ToString("N");
        var start = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = RepositoryPaths.Root,
        };
        // A runner started in the background may have inherited SIGINT as ignored, and a process keeps that; env
        // --default-signal restores it, so the test's SIGINT means what Ctrl+C means to a developer.
        if (EnvSupportsDefaultSignal.Value)
        {
            start.FileName = "env";
            start.ArgumentList.Add("--default-signal=INT");
            start.ArgumentList.Add("dotnet");
        }
        else
        {
            start.FileName = "dotnet";
        }
        start.ArgumentList.Add(Dll);

        // Nothing from the test runner's own environment decides what the AppHost connects to.
        foreach (var key in start.Environment.Keys.Where(k =>
                     k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("Database__", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("Seed__", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("AppHost__", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("OTEL_", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("ASPNETCORE_", StringComparison.OrdinalIgnoreCase)
                     || k is "DB_TYPE" or "DOTNET_ENVIRONMENT").ToList())
        {
            start.Environment.Remove(key);
        }
        start.Environment["AppHost__PostgresStateDirectory"] = stateDirectory;
        start.Environment["AppHost__ApiUrl"] = $"http://localhost:{apiPort}";
        start.Environment[RunMarkerVariable] = runMarker;
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) start.Environment.Remove(key);
            else start.Environment[key] = value;
        }

        var process = new Process { StartInfo = start };
        var appHost = new AppHostProcess(process, stateDirectory, apiPort, runMarker);
        process.OutputDataReceived += (_, e) => appHost.Append(e.Data);
        process.ErrorDataReceived += (_, e) => appHost.Append(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return appHost;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    /// <summary>Waits for the line the AppHost prints once the API is healthy, and returns the API's URL.</summary>
    public async Task<Uri> WaitUntilRunningAsync(TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromMinutes(2);
        while (deadline.Elapsed < limit)
        {
            if (RunningUrl().Match(Output) is { Success: true } match) return new Uri(match.Groups[1].Value);
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The AppHost exited with code {_process.ExitCode} before it was running.\n{Output}");
            }
            await Task.Delay(100);
        }
        throw new TimeoutException($"The AppHost did not print '{RunningLine}' within {limit.TotalSeconds:0} s.\n{Output}");
    }

    /// <summary>Waits for the AppHost to exit; null if it did not within <paramref name="timeout"/>.</summary>
    public async Task<int?> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    public void SendSignal(int signal) => Assert.True(Posix.SendSignal(_process.Id, signal), $"could not signal pid {_process.Id}");

    /// <summary>The process id the AppHost printed for a service ("API: started (pid 123)").</summary>
    public int ServicePid(string label) =>
        int.Parse(Regex.Match(Output, $@"^{Regex.Escape(label)}: started \(pid (\d+)\)", RegexOptions.Multiline).Groups[1].Value);

    /// <summary>
    /// Processes still alive from this run: any process carrying the run's marker variable (the AppHost, the worker,
    /// the API, pg_ctl and the postmaster all inherit it) or naming the state directory on its command line.
    /// </summary>
    public IReadOnlyList<string> LeftoverProcesses()
    {
        var leftovers = new List<string>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId) continue;
            var commandLine = ReadProcFile(dir, "cmdline");
            var environment = ReadProcFile(dir, "environ");
            if (commandLine.Contains(StateDirectory, StringComparison.Ordinal)
                || environment.Contains($"{RunMarkerVariable}={RunMarker}", StringComparison.Ordinal))
            {
                leftovers.Add($"{pid}: {commandLine}");
            }
        }
        return leftovers;
    }

    private static string ReadProcFile(string processDirectory, string file)
    {
        try
        {
            return File.ReadAllText(Path.Combine(processDirectory, file)).Replace('\0', ' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ""; // exited meanwhile, or not ours to read
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        // A service the AppHost started is its child and went with the tree; this catches anything that escaped.
        foreach (var leftover in LeftoverProcesses())
        {
            var pid = int.Parse(leftover[..leftover.IndexOf(':')]);
            try
            {
                using var process = Process.GetProcessById(pid);
                if (!process.ProcessName.StartsWith("postgres", StringComparison.Ordinal)) process.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // Already gone.
            }
        }
        _process.Dispose();
    }

    private static readonly Lazy<bool> EnvSupportsDefaultSignal = new(() =>
    {
        try
        {
            using var probe = Process.Start(new ProcessStartInfo("env", ["--default-signal=INT", "true"])
            {
                RedirectStandardError = true,
                UseShellExecute = false,
            })!;
            probe.WaitForExit();
            return probe.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    });

    [GeneratedRegex(@"TC Studio is running: API (\S+)")]
    private static partial Regex RunningUrl();
}

/// <summary>
/// A PostgreSQL state directory for AppHost runs, under the temp directory (reachable by the postgres user). Kept
/// across runs until disposed; disposing stops any server still running on it and deletes it.
/// </summary>
public sealed class AppHostStateDirectory : IAsyncDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tcstudio-tests",
        "apphost-" + Guid.NewGuid().ToString("N")[..12]);

    public LocalPostgresCluster Cluster => new(new LocalPostgresOptions { StateDirectory = Path });

    public string SuperuserPassword => File.ReadAllText(System.IO.Path.Combine(Path, "superuser.password")).Trim();

    public async ValueTask DisposeAsync()
    {
        if (Directory.Exists(Path)) await Cluster.DestroyAsync();
    }
}
