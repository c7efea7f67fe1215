using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace TcStudio.Benchmarks.Load;

/// <summary>
/// The load generator as a child process of the benchmark (so it does not share a runtime, a thread pool or a GC with
/// the API it measures). Started once per benchmark run; each load run is one line in, one line out.
/// </summary>
public sealed class LoadGeneratorProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();

    private LoadGeneratorProcess(Process process) => _process = process;

    public int Id => _process.Id;

    public static LoadGeneratorProcess Start()
    {
        var dll = typeof(LoadGeneratorProcess).Assembly.Location;
        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var start = new ProcessStartInfo(host)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(dll);
        start.ArgumentList.Add("loadgen");
        // The generator allocates little; workstation GC keeps it off the API's second core.
        start.Environment["DOTNET_gcServer"] = "0";
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the load generator.");
        var generator = new LoadGeneratorProcess(process);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (generator._stderr) generator._stderr.AppendLine(e.Data);
        };
        process.BeginErrorReadLine();
        return generator;
    }

    public async Task<LoadResult> RunAsync(LoadCommand command, CancellationToken cancellationToken = default)
    {
        await _process.StandardInput.WriteLineAsync(JsonSerializer.Serialize(command, LoadJson.Options).AsMemory(), cancellationToken);
        await _process.StandardInput.FlushAsync(cancellationToken);
        var line = await _process.StandardOutput.ReadLineAsync(cancellationToken);
        if (line is null)
        {
            string errors;
            lock (_stderr) errors = _stderr.ToString();
            throw new InvalidOperationException($"The load generator exited: {errors.Trim()}");
        }
        return JsonSerializer.Deserialize<LoadResult>(line, LoadJson.Options)!;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.StandardInput.Close();
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(wait.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or IOException)
        {
            if (!_process.HasExited) _process.Kill();
        }
        _process.Dispose();
    }
}

/// <summary>
/// The in-process counterpart for raw Npgsql baselines: the same closed loop (clients, warm-up, measured window,
/// exact percentiles), with each "request" a delegate.
/// </summary>
public static class ClosedLoop
{
    public static async Task<LoadResult> RunAsync(int clients, TimeSpan warmup, TimeSpan duration,
        Func<int, long, Task> operation)
    {
        var started = Stopwatch.GetTimestamp();
        var measureFrom = started + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        var measureUntil = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var latencies = new List<double>[clients];
        var errors = new Dictionary<string, long>[clients];
        string? firstError = null;

        await Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(async () =>
        {
            var mine = latencies[client] = new List<double>(4096);
            var myErrors = errors[client] = [];
            for (long sequence = 0; ; sequence++)
            {
                var at = Stopwatch.GetTimestamp();
                if (at >= measureUntil) return;
                try
                {
                    await operation(client, sequence);
                    var done = Stopwatch.GetTimestamp();
                    if (done >= measureFrom && done < measureUntil) mine.Add(Stopwatch.GetElapsedTime(at, done).TotalMilliseconds);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    var done = Stopwatch.GetTimestamp();
                    if (done < measureFrom || done >= measureUntil) continue;
                    var kind = e.GetType().Name;
                    myErrors[kind] = myErrors.GetValueOrDefault(kind) + 1;
                    Interlocked.CompareExchange(ref firstError, $"{kind}: {e.Message}", null);
                }
            }
        })));

        var all = new List<double>(latencies.Sum(l => l.Count));
        foreach (var list in latencies) all.AddRange(list);
        var merged = new Dictionary<string, long>();
        foreach (var (kind, count) in errors.SelectMany(e => e)) merged[kind] = merged.GetValueOrDefault(kind) + count;
        return LoadResult.From(all, duration.TotalSeconds, merged, firstError);
    }
}
