using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace TcStudio.Tests.Infrastructure;

/// <summary>One Server-Sent Events message as a client sees it (<see cref="Event"/> null for the default "message").</summary>
public sealed record SseMessage(string? Event, string? Id, string Data)
{
    public JsonElement Json => JsonDocument.Parse(Data).RootElement;

    /// <summary>An activity message's data read as the activity log's record (strict, as <see cref="HttpAssert.ReadAsync"/>).</summary>
    public TcStudio.Api.Activities.ActivityResponse Activity =>
        JsonSerializer.Deserialize<TcStudio.Api.Activities.ActivityResponse>(Data, HttpAssert.ResponseJson)!;
}

/// <summary>
/// A minimal SSE client over HttpClient, written from the spec (fields, comments, blank-line dispatch) so tests see
/// exactly what goes over the wire, comments included.
/// </summary>
public sealed class EventStreamClient : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;
    private int _comments;

    private EventStreamClient(HttpResponseMessage response, Stream body)
    {
        _response = response;
        _reader = new StreamReader(body, Encoding.UTF8);
    }

    public HttpResponseMessage Response => _response;

    /// <summary>Comment lines seen so far (heartbeats).</summary>
    public int Comments => Volatile.Read(ref _comments);

    /// <summary>The id of the last message that carried one: what a browser would send as Last-Event-ID.</summary>
    public string? LastEventId { get; private set; }

    /// <summary>Opens the stream; a non-200 answer is returned as the response with no stream (see <see cref="IsOpen"/>).</summary>
    public static async Task<EventStreamClient> OpenAsync(HttpClient client, string path, string? lastEventId = null,
        CancellationToken cancellationToken = default)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        if (lastEventId is not null) request.Headers.Add("Last-Event-ID", lastEventId);
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var body = response.IsSuccessStatusCode ? await response.Content.ReadAsStreamAsync(cancellationToken) : Stream.Null;
        return new EventStreamClient(response, body);
    }

    public bool IsOpen => _response.IsSuccessStatusCode;

    /// <summary>The next message, or null when the server ended the stream. Throws on timeout.</summary>
    public async Task<SseMessage?> NextAsync(TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        string? eventType = null, id = null;
        var data = new StringBuilder();
        var hasData = false;
        while (true)
        {
            string? line;
            try
            {
                line = await _reader.ReadLineAsync(deadline.Token);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                throw new TimeoutException("No server-sent event arrived in time.");
            }
            if (line is null) return null;
            if (line.Length == 0)
            {
                if (id is not null) LastEventId = id;
                if (!hasData) continue; // nothing to dispatch (a comment block, or an id-only block)
                return new SseMessage(eventType, id, data.ToString());
            }
            if (line[0] == ':')
            {
                Interlocked.Increment(ref _comments);
                continue;
            }
            var colon = line.IndexOf(':');
            var field = colon < 0 ? line : line[..colon];
            var value = colon < 0 ? "" : line[(colon + 1)..];
            if (value.StartsWith(' ')) value = value[1..];
            switch (field)
            {
                case "event":
                    eventType = value;
                    break;
                case "id":
                    id = value;
                    break;
                case "data":
                    if (hasData) data.Append('\n');
                    data.Append(value);
                    hasData = true;
                    break;
            }
        }
    }

    /// <summary>The next <paramref name="count"/> activity events (unnamed messages), skipping nothing else silently.</summary>
    public async Task<List<SseMessage>> ActivitiesAsync(int count, TimeSpan? timeout = null)
    {
        var messages = new List<SseMessage>();
        while (messages.Count < count)
        {
            var message = await NextAsync(timeout) ?? throw new InvalidOperationException(
                $"The stream ended after {messages.Count} of {count} activity events.");
            Assert.True(message.Event is null, $"expected an activity event, got '{message.Event}': {message.Data}");
            messages.Add(message);
        }
        return messages;
    }

    /// <summary>Reads the opening <c>ready</c> event and returns its id (the start position).</summary>
    public async Task<string> ReadyAsync()
    {
        if (!IsOpen)
        {
            throw new InvalidOperationException(
                $"The stream did not open: {(int)_response.StatusCode} {await _response.Content.ReadAsStringAsync()}");
        }
        var ready = await NextAsync() ?? throw new InvalidOperationException("The stream ended before it was ready.");
        Assert.Equal("ready", ready.Event);
        return ready.Id!;
    }

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        await Task.CompletedTask;
    }
}
