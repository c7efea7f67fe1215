using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.ServerSentEvents;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace TcStudio.Benchmarks.Load;

/// <summary>What the event probe does in one run.</summary>
public sealed record EventProbeCommand
{
    public required string BaseUrl { get; init; }
    public required string BearerToken { get; init; }
    public required string Slug { get; init; }
    public required Guid WorkspaceId { get; init; }
    public required string ConnectionString { get; init; }
    public required int Subscribers { get; init; }
    public required int Events { get; init; }
    public required int IntervalMs { get; init; }
    public int ConnectParallelism { get; init; } = 50;
}

/// <summary>Delivery latencies (commit acknowledged to the writer → event parsed by a subscriber), all samples.</summary>
public sealed record EventProbeResult
{
    public long Samples { get; init; }
    public double P50Ms { get; init; }
    public double P95Ms { get; init; }
    public double P99Ms { get; init; }
    public double MaxMs { get; init; }
    public long Missing { get; init; }
    public long Duplicates { get; init; }
    public double ConnectSeconds { get; init; }
    public double BaselineP50Ms { get; init; }
    public double BaselineP95Ms { get; init; }
    public double BaselineP99Ms { get; init; }
    public double BaselineMaxMs { get; init; }
    public string? FirstError { get; init; }
}

/// <summary>
/// The live-events probe, run as its own process (<c>TcStudio.Benchmarks events-probe</c>, one command in on stdin,
/// one result out on stdout) so its thousand clients share neither the runtime nor the thread pool of the API they
/// measure. It opens N SSE streams on the workspace and waits until each has said <c>ready</c>; then it inserts
/// activities one at a time (each its own transaction, raw Npgsql, like any writer) at a fixed interval, noting when
/// each commit was acknowledged; every stream notes when it parsed each event. Latency = parsed − acknowledged, over
/// every (stream, event) pair. The baseline is PostgreSQL's own wake-up: NOTIFY committed by the same writer, received
/// by one raw Npgsql LISTEN connection, at the same interval.
/// </summary>
public static class EventStreamProbe
{
    public static async Task<int> ServeAsync()
    {
        var line = await Console.In.ReadLineAsync() ?? throw new InvalidOperationException("No probe command on stdin.");
        var command = JsonSerializer.Deserialize<EventProbeCommand>(line, LoadJson.Options)!;
        EventProbeResult result;
        try
        {
            result = await RunAsync(command);
        }
        catch (Exception e)
        {
            result = new EventProbeResult { FirstError = $"{e.GetType().Name}: {e.Message}" };
        }
        await Console.Out.WriteLineAsync(JsonSerializer.Serialize(result, LoadJson.Options));
        await Console.Out.FlushAsync();
        return 0;
    }

    /// <summary>Runs one probe in a child process and returns its result.</summary>
    public static async Task<EventProbeResult> RunInChildProcessAsync(EventProbeCommand command, TimeSpan timeout)
    {
        var dll = typeof(EventStreamProbe).Assembly.Location;
        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var start = new ProcessStartInfo(host)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(dll);
        start.ArgumentList.Add("events-probe");
        start.Environment["DOTNET_gcServer"] = "0";
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the event probe.");
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stderr) stderr.AppendLine(e.Data);
        };
        process.BeginErrorReadLine();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.StandardInput.WriteLineAsync(JsonSerializer.Serialize(command, LoadJson.Options).AsMemory(), deadline.Token);
            await process.StandardInput.FlushAsync(deadline.Token);
            process.StandardInput.Close();
            var line = await process.StandardOutput.ReadLineAsync(deadline.Token);
            await process.WaitForExitAsync(deadline.Token);
            if (line is null)
            {
                lock (stderr) throw new InvalidOperationException($"The event probe exited without a result: {stderr.ToString().Trim()}");
            }
            return JsonSerializer.Deserialize<EventProbeResult>(line, LoadJson.Options)!;
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"The event probe did not finish within {timeout.TotalSeconds:0} s.");
        }
    }

    private sealed class Subscriber(int events)
    {
        public readonly long[] ReceivedAt = new long[events];
        public readonly TaskCompletionSource Ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long Duplicates;
        public int Received;
        public string? Error;
    }

    public static async Task<EventProbeResult> RunAsync(EventProbeCommand command)
    {
        using var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = int.MaxValue,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        };
        using var http = new HttpClient(handler) { BaseAddress = new Uri(command.BaseUrl), Timeout = Timeout.InfiniteTimeSpan };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", command.BearerToken);
        using var stop = new CancellationTokenSource();

        var subscribers = Enumerable.Range(0, command.Subscribers).Select(_ => new Subscriber(command.Events)).ToArray();
        var connectStarted = Stopwatch.GetTimestamp();
        var readers = new List<Task>();
        using (var connecting = new SemaphoreSlim(command.ConnectParallelism))
        {
            foreach (var subscriber in subscribers)
            {
                await connecting.WaitAsync();
                readers.Add(Task.Run(async () =>
                {
                    try
                    {
                        await SubscribeAsync(http, command, subscriber, connecting, stop.Token);
                    }
                    catch (Exception e) when (!stop.IsCancellationRequested)
                    {
                        subscriber.Error = $"{e.GetType().Name}: {e.Message}";
                        subscriber.Ready.TrySetResult();
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }));
            }
            await Task.WhenAll(subscribers.Select(s => s.Ready.Task)).WaitAsync(TimeSpan.FromMinutes(2));
        }
        var connectSeconds = Stopwatch.GetElapsedTime(connectStarted).TotalSeconds;
        if (subscribers.FirstOrDefault(s => s.Error is not null)?.Error is { } failed)
        {
            await stop.CancelAsync();
            return new EventProbeResult { FirstError = $"a subscriber failed to connect: {failed}", ConnectSeconds = connectSeconds };
        }

        // The writer: one activity per interval, each its own transaction.
        var committedAt = new long[command.Events];
        await using (var connection = new NpgsqlConnection(command.ConnectionString))
        {
            await connection.OpenAsync();
            for (var seq = 0; seq < command.Events; seq++)
            {
                var next = Stopwatch.GetTimestamp() + Stopwatch.Frequency * command.IntervalMs / 1000;
                await using var insert = new NpgsqlCommand(
                    "INSERT INTO activities (id, workspace_id, action, entity_type, details) VALUES ($1, $2, 'bench.event', 'system', $3::jsonb)",
                        connection)
                {
                    Parameters = { new() { Value = Guid.CreateVersion7() }, new() { Value = command.WorkspaceId },
                        new() { Value = $"{{\"seq\": {seq}}}" } },
                };
                await insert.ExecuteNonQueryAsync();
                committedAt[seq] = Stopwatch.GetTimestamp();
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next);
                if (wait > TimeSpan.Zero) await Task.Delay(wait);
            }
        }

        // Everything should arrive within seconds; give stragglers up to 30 s, then count what is missing.
        var settle = Stopwatch.StartNew();
        while (subscribers.Any(s => Volatile.Read(ref s.Received) < command.Events && s.Error is null) && settle.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(50);
        }
        await stop.CancelAsync();
        await Task.WhenAll(readers);

        var latencies = new List<double>(command.Subscribers * command.Events);
        long missing = 0, duplicates = 0;
        foreach (var subscriber in subscribers)
        {
            duplicates += subscriber.Duplicates;
            for (var seq = 0; seq < command.Events; seq++)
            {
                if (subscriber.ReceivedAt[seq] == 0) missing++;
                else latencies.Add(Math.Max(0, (subscriber.ReceivedAt[seq] - committedAt[seq]) * 1000.0 / Stopwatch.Frequency));
            }
        }
        var sorted = latencies.ToArray();
        Array.Sort(sorted);
        var baseline = await BaselineAsync(command);
        return new EventProbeResult
        {
            Samples = sorted.Length,
            P50Ms = Stats.Percentile(sorted, 50),
            P95Ms = Stats.Percentile(sorted, 95),
            P99Ms = Stats.Percentile(sorted, 99),
            MaxMs = sorted.Length == 0 ? double.NaN : sorted[^1],
            Missing = missing,
            Duplicates = duplicates,
            ConnectSeconds = connectSeconds,
            BaselineP50Ms = Stats.Percentile(baseline, 50),
            BaselineP95Ms = Stats.Percentile(baseline, 95),
            BaselineP99Ms = Stats.Percentile(baseline, 99),
            BaselineMaxMs = baseline.Length == 0 ? double.NaN : baseline[^1],
            FirstError = subscribers.Select(s => s.Error).FirstOrDefault(e => e is not null),
        };
    }

    private static async Task SubscribeAsync(HttpClient http, EventProbeCommand command, Subscriber subscriber, SemaphoreSlim connecting,
        CancellationToken cancellationToken)
    {
        var released = false;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/workspaces/{command.Slug}/events");
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new InvalidOperationException($"HTTP {(int)response.StatusCode}: "
                    + $"{await response.Content.ReadAsStringAsync(cancellationToken)}");
            }
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            await foreach (var item in SseParser.Create(body).EnumerateAsync(cancellationToken))
            {
                if (item.EventType == "ready")
                {
                    connecting.Release();
                    released = true;
                    subscriber.Ready.TrySetResult();
                    continue;
                }
                if (item.EventType != SseParser.EventTypeDefault) continue;
                var now = Stopwatch.GetTimestamp();
                using var json = JsonDocument.Parse(item.Data);
                if (!json.RootElement.TryGetProperty("details", out var details) || details.ValueKind != JsonValueKind.Object
                    || !details.TryGetProperty("seq", out var seqElement))
                {
                    continue;
                }
                var seq = seqElement.GetInt32();
                if (seq < 0 || seq >= subscriber.ReceivedAt.Length) continue;
                if (subscriber.ReceivedAt[seq] != 0)
                {
                    subscriber.Duplicates++;
                    continue;
                }
                subscriber.ReceivedAt[seq] = now;
                Interlocked.Increment(ref subscriber.Received);
            }
        }
        finally
        {
            if (!released) connecting.Release();
        }
    }

    /// <summary>PostgreSQL's own floor: commit of a NOTIFY → one raw LISTEN connection receives it.</summary>
    private static async Task<double[]> BaselineAsync(EventProbeCommand command)
    {
        var channel = "bench_probe_" + Guid.NewGuid().ToString("N")[..8];
        var received = new long[command.Events];
        await using var listener = new NpgsqlConnection(command.ConnectionString);
        await listener.OpenAsync();
        listener.Notification += (_, e) =>
        {
            if (int.TryParse(e.Payload, out var seq) && seq >= 0 && seq < received.Length) received[seq] = Stopwatch.GetTimestamp();
        };
        await using (var listen = new NpgsqlCommand($"LISTEN {channel}", listener)) await listen.ExecuteNonQueryAsync();
        using var stop = new CancellationTokenSource();
        var waiting = Task.Run(async () =>
        {
            try
            {
                while (true) await listener.WaitAsync(stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
        });

        var committedAt = new long[command.Events];
        await using (var writer = new NpgsqlConnection(command.ConnectionString))
        {
            await writer.OpenAsync();
            for (var seq = 0; seq < command.Events; seq++)
            {
                var next = Stopwatch.GetTimestamp() + Stopwatch.Frequency * command.IntervalMs / 1000;
                await using var notify = new NpgsqlCommand("SELECT pg_notify($1, $2)", writer)
                {
                    Parameters = { new() { Value = channel }, new() { Value = seq.ToString() } },
                };
                await notify.ExecuteNonQueryAsync();
                committedAt[seq] = Stopwatch.GetTimestamp();
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next);
                if (wait > TimeSpan.Zero) await Task.Delay(wait);
            }
        }
        var settle = Stopwatch.StartNew();
        while (received.Any(r => r == 0) && settle.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20);
        await stop.CancelAsync();
        await waiting;
        var latencies = received.Select((r, seq) => r == 0 ? double.NaN : Math.Max(0, (r - committedAt[seq]) * 1000.0 / Stopwatch.Frequency))
            .Where(l => !double.IsNaN(l)).ToArray();
        Array.Sort(latencies);
        return latencies;
    }
}
