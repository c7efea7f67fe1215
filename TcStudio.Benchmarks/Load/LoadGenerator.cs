using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;

namespace TcStudio.Benchmarks.Load;

/// <summary>
/// The HTTP load generator, run as its own process (<c>TcStudio.Benchmarks loadgen</c>): reads one
/// <see cref="LoadCommand"/> per line on stdin, runs it, writes one <see cref="LoadResult"/> per line on stdout.
/// Closed loop: each client sends its next request as soon as the previous answer is read, on its own keep-alive
/// connection. Every latency of the measured window is kept, so percentiles are exact.
/// </summary>
public static class LoadGenerator
{
    public static async Task<int> ServeAsync()
    {
        var stdout = Console.Out;
        while (await Console.In.ReadLineAsync() is { } line)
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            var command = JsonSerializer.Deserialize<LoadCommand>(line, LoadJson.Options)
                ?? throw new InvalidOperationException("Empty load command.");
            var result = await RunAsync(command);
            await stdout.WriteLineAsync(JsonSerializer.Serialize(result, LoadJson.Options));
            await stdout.FlushAsync();
        }
        return 0;
    }

    private sealed class ClientState(int index)
    {
        public readonly int Index = index;
        public readonly Random Random = new(index * 7919 + 17);
        public readonly List<double> Latencies = new(4096);
        public readonly Dictionary<string, long> Errors = [];
        public readonly Dictionary<string, string> ETags = new(StringComparer.Ordinal);
        public string? FirstError;
        public long Sequence;
        public HttpConnection? Connection;

        public void Error(string kind, string? detail, bool measured)
        {
            if (!measured) return;
            Errors[kind] = Errors.GetValueOrDefault(kind) + 1;
            FirstError ??= detail is null ? kind : $"{kind}: {detail}";
        }
    }

    public static async Task<LoadResult> RunAsync(LoadCommand command)
    {
        var baseUri = new Uri(command.BaseUrl);
        var address = baseUri.Host is "localhost" ? IPAddress.Loopback : IPAddress.Parse(baseUri.Host);
        var endpoint = new IPEndPoint(address, baseUri.Port);
        var hostHeader = $"{baseUri.Host}:{baseUri.Port}";
        var totalWeight = command.Requests.Sum(r => r.Weight);
        var clients = Enumerable.Range(0, command.Clients).Select(i => new ClientState(i)).ToArray();

        // Connections first, a bounded number at a time, outside the clock.
        using (var connecting = new SemaphoreSlim(command.ConnectParallelism))
        {
            await Task.WhenAll(clients.Select(async client =>
            {
                await connecting.WaitAsync();
                try
                {
                    client.Connection = await ConnectWithRetryAsync(endpoint, client, measured: true, CancellationToken.None);
                }
                finally
                {
                    connecting.Release();
                }
            }));
        }

        var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var started = Stopwatch.GetTimestamp();
        var measureFrom = started + Ticks(command.WarmupMs);
        var measureUntil = measureFrom + Ticks(command.DurationMs);
        // A request still unanswered 30 s after the end is abandoned and counted as a timeout.
        using var hardStop = new CancellationTokenSource(TimeSpan.FromMilliseconds(command.WarmupMs + command.DurationMs + 30_000));

        await Task.WhenAll(clients.Select(client => Task.Run(() => ClientLoopAsync(
            client, command, endpoint, hostHeader, totalWeight, measureFrom, measureUntil, hardStop.Token))));

        var wall = Stopwatch.GetElapsedTime(started);
        process.Refresh();
        var cpu = (process.TotalProcessorTime - cpuBefore).TotalSeconds / wall.TotalSeconds;
        foreach (var client in clients) client.Connection?.Dispose();

        var latencies = new List<double>(clients.Sum(c => c.Latencies.Count));
        var errors = new Dictionary<string, long>();
        foreach (var client in clients)
        {
            latencies.AddRange(client.Latencies);
            foreach (var (kind, count) in client.Errors) errors[kind] = errors.GetValueOrDefault(kind) + count;
        }
        return LoadResult.From(latencies, command.DurationMs / 1000.0, errors,
            clients.Select(c => c.FirstError).FirstOrDefault(e => e is not null), cpu);
    }

    private static async Task ClientLoopAsync(ClientState client, LoadCommand command, IPEndPoint endpoint, string hostHeader,
        int totalWeight, long measureFrom, long measureUntil, CancellationToken hardStop)
    {
        while (true)
        {
            var startedAt = Stopwatch.GetTimestamp();
            if (startedAt >= measureUntil) return;
            var (_, spec) = Pick(command.Requests, totalWeight, client.Random);
            var (request, path) = Build(command, spec, client, hostHeader);
            // What counts is what completes inside the measured window (as wrk counts), so a long queue is measured
            // by its latency instead of vanishing from the sample.
            bool Measured()
            {
                var now = Stopwatch.GetTimestamp();
                return now >= measureFrom && now < measureUntil;
            }
            try
            {
                client.Connection ??= await ConnectWithRetryAsync(endpoint, client, Measured(), hardStop);
                var answer = await client.Connection.SendAsync(request, hardStop);
                var elapsed = Stopwatch.GetElapsedTime(startedAt).TotalMilliseconds;
                if (answer.Status is >= 200 and < 300)
                {
                    if (Measured()) client.Latencies.Add(elapsed);
                    if (answer.ETag is not null) client.ETags[path] = answer.ETag;
                }
                else
                {
                    client.Error($"HTTP {answer.Status}", $"{spec.Method} {spec.Path}: {answer.ErrorBody}", Measured());
                    // A conflict or a failed precondition means the ETag we hold is stale: start over without it.
                    if (answer.Status is 409 or 412) client.ETags.Remove(path);
                }
                if (answer.ServerCloses) Reconnect(client);
            }
            catch (OperationCanceledException) when (hardStop.IsCancellationRequested)
            {
                client.Error("timeout", $"no answer 30 s after the run ended ({spec.Method} {spec.Path})", measured: true);
                return;
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                client.Error("io", e.Message, Measured());
                Reconnect(client);
            }
        }
    }

    private static void Reconnect(ClientState client)
    {
        client.Connection?.Dispose();
        client.Connection = null;
    }

    private static async Task<HttpConnection> ConnectWithRetryAsync(IPEndPoint endpoint, ClientState client, bool measured,
        CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await HttpConnection.ConnectAsync(endpoint, cancellationToken);
            }
            catch (System.Net.Sockets.SocketException e) when (attempt < 50)
            {
                client.Error("connect", e.Message, measured);
                await Task.Delay(20 * attempt, cancellationToken);
            }
        }
    }

    private static (int Index, RequestSpec Spec) Pick(IReadOnlyList<RequestSpec> requests, int totalWeight, Random random)
    {
        if (requests.Count == 1) return (0, requests[0]);
        var roll = random.Next(totalWeight);
        for (var i = 0; i < requests.Count; i++)
        {
            roll -= requests[i].Weight;
            if (roll < 0) return (i, requests[i]);
        }
        return (requests.Count - 1, requests[^1]);
    }

    private static (byte[] Request, string Path) Build(LoadCommand command, RequestSpec spec, ClientState client, string hostHeader)
    {
        var sequence = client.Sequence++;
        var path = Fill(spec.Path, command, client, sequence);
        var body = spec.Body is null ? null : Fill(spec.Body, command, client, sequence);
        var text = new StringBuilder(256)
            .Append(spec.Method).Append(' ').Append(path).Append(" HTTP/1.1\r\n")
            .Append("Host: ").Append(hostHeader).Append("\r\n");
        if (command.BearerToken is not null) text.Append("Authorization: Bearer ").Append(command.BearerToken).Append("\r\n");
        if (spec.SendIfMatch && client.ETags.TryGetValue(path, out var etag)) text.Append("If-Match: ").Append(etag).Append("\r\n");
        if (body is not null)
        {
            text.Append("Content-Type: application/json\r\nContent-Length: ").Append(Encoding.UTF8.GetByteCount(body))
                .Append("\r\n\r\n").Append(body);
        }
        else
        {
            text.Append("\r\n");
        }
        return (Encoding.UTF8.GetBytes(text.ToString()), path);
    }

    private static string Fill(string template, LoadCommand command, ClientState client, long sequence)
    {
        if (!template.Contains('{')) return template;
        var text = template
            .Replace("{client}", client.Index.ToString())
            .Replace("{seq}", sequence.ToString())
            .Replace("{run}", command.Run)
            .Replace("{slot}", (sequence % Math.Max(1, command.Slots)).ToString())
            .Replace("{page}", (client.Random.Next(Math.Max(1, command.Pages)) + 1).ToString());
        if (text.Contains("{term}") && command.Terms.Count > 0)
        {
            text = text.Replace("{term}", command.Terms[client.Random.Next(command.Terms.Count)]);
        }
        return text;
    }

    private static long Ticks(int milliseconds) => (long)(milliseconds / 1000.0 * Stopwatch.Frequency);
}
