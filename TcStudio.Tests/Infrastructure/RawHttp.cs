using System.Net.Sockets;
using System.Text;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// HTTP/1.1 over a plain socket, for what HttpClient will not do: send a path exactly as written (no normalisation
/// of dot segments), or send a request and drop the connection without reading the answer.
/// </summary>
public static class RawHttp
{
    public static string Request(string method, string target, Uri server, IEnumerable<(string Name, string Value)> headers, string? body = null)
    {
        var text = new StringBuilder($"{method} {target} HTTP/1.1\r\nHost: {server.Host}:{server.Port}\r\nConnection: close\r\n");
        foreach (var (name, value) in headers) text.Append($"{name}: {value}\r\n");
        if (body is not null)
        {
            text.Append("Content-Type: application/json\r\n");
            text.Append($"Content-Length: {Encoding.UTF8.GetByteCount(body)}\r\n");
        }
        text.Append("\r\n");
        if (body is not null) text.Append(body);
        return text.ToString();
    }

    /// <summary>Sends the request and returns the status code and the whole response text.</summary>
    public static async Task<(int Status, string Response)> SendAsync(Uri server, string request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var response = await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
        var status = int.Parse(response.Split(' ', 3)[1]);
        return (status, response);
    }

    /// <summary>Sends the request, waits <paramref name="delay"/>, then resets the connection without reading anything.</summary>
    public static async Task SendAndDropAsync(Uri server, string request, TimeSpan delay)
    {
        using var client = new TcpClient { LingerState = new LingerOption(true, 0) };
        await client.ConnectAsync(server.Host, server.Port);
        await client.GetStream().WriteAsync(Encoding.UTF8.GetBytes(request));
        await Task.Delay(delay);
        client.Client.Close(); // linger 0: an RST, as when a client process dies or a network path drops
    }
}
