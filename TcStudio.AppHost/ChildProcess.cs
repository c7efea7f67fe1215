using System.Diagnostics;
using System.Text.RegularExpressions;

namespace TcStudio.AppHost;

/// <summary>
/// One service run as <c>dotnet X.dll</c>: its output shown line by line behind a short prefix (<c>[api]</c>), its
/// last failure line kept for the report, stopped with SIGTERM (a graceful host shutdown) and killed only if it
/// does not stop in time.
/// </summary>
public sealed partial class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly string _prefix;
    private string? _lastErrorLine;
    private string? _lastReasonLine;

    private ChildProcess(string prefix, Process process)
    {
        _prefix = prefix;
        _process = process;
    }

    public string Prefix => _prefix;
    public int Id => _process.Id;

    /// <summary>Completes with the exit code once the process has exited and its output has been read to the end.</summary>
    public Task<int> Exited { get; private set; } = Task.FromResult(-1);

    /// <summary>
    /// The line that says why the process failed: its last stderr line that is not part of a log entry (the services
    /// print their one-line reason, or the runtime its unhandled exception, on stderr next to their logs), else its
    /// last stderr line.
    /// </summary>
    public string? Reason => _lastReasonLine ?? _lastErrorLine;

    public static ChildProcess Start(string prefix, ServiceProject project, IReadOnlyDictionary<string, string?> environment)
    {
        var start = new ProcessStartInfo(DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true, // a service never competes with the AppHost for the terminal
            UseShellExecute = false,
            // Like Aspire and `dotnet run`: the project directory is the content root.
            WorkingDirectory = project.ProjectDirectory,
        };
        start.ArgumentList.Add(project.AssemblyPath);
        foreach (var (key, value) in environment)
        {
            if (value is null) start.Environment.Remove(key);
            else start.Environment[key] = value;
        }

        var process = new Process { StartInfo = start };
        var child = new ChildProcess(prefix, process);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data, isError: false);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data, isError: true);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        child.Exited = child.WaitForExitCodeAsync();
        return child;
    }

    private async Task<int> WaitForExitCodeAsync()
    {
        // WaitForExitAsync also waits for the redirected output to be read to its end.
        await _process.WaitForExitAsync();
        return _process.ExitCode;
    }

    private void OnLine(string? line, bool isError)
    {
        if (line is null) return;
        try
        {
            (isError ? Console.Error : Console.Out).WriteLine($"[{_prefix}] {line}");
        }
        catch (IOException)
        {
            // The terminal is gone (SIGHUP); keep reading, or the service would block on a full pipe.
        }
        if (line.Length == 0) return;
        if (!isError) return;
        _lastErrorLine = line;
        if (!IsPartOfLogEntry().IsMatch(line)) _lastReasonLine = line;
    }

    /// <summary>"137 (killed by signal 9)": on Unix an exit code above 128 is how a signal's death is reported.</summary>
    public static string Describe(int exitCode) =>
        exitCode > 128 && !OperatingSystem.IsWindows() ? $"{exitCode} (killed by signal {exitCode - 128})" : $"{exitCode}";

    /// <summary>The dotnet host running the AppHost itself when there is one, so the services run on the same install.</summary>
    private static string DotnetHost =>
        Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet";

    /// <summary>
    /// Sends SIGTERM (the .NET host stops gracefully), waits up to <paramref name="timeout"/>, then kills the process
    /// and anything it started.
    /// </summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (Exited.IsCompleted) return;
        Posix.SendSignal(_process.Id, Posix.SIGTERM);
        if (await Task.WhenAny(Exited, Task.Delay(timeout)) == Exited) return;
        Console.Error.WriteLine($"The {_prefix} process (pid {_process.Id}) did not stop within {timeout.TotalSeconds:0} s; killing it.");
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // It exited in the meantime.
        }
        await Exited;
    }

    public void Dispose() => _process.Dispose();

    /// <summary>
    /// Microsoft.Extensions.Logging's console format ("info: Category[0]" then indented message lines), and the
    /// runtime's stack traces ("   at ...", "--- End of stack trace ... ---") under an unhandled exception's line.
    /// </summary>
    [GeneratedRegex(@"^(\s|(trce|dbug|info|warn|fail|crit): |--- )")]
    private static partial Regex IsPartOfLogEntry();
}
