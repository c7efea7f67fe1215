using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TcStudio.Benchmarks.Load;

/// <summary>What the load generator keeps of a response: status, ETag, whether the server closes, an error body.</summary>
public readonly record struct HttpAnswer(int Status, string? ETag, bool ServerCloses, string? ErrorBody);

/// <summary>
/// A minimal HTTP/1.1 keep-alive client connection: writes a prepared request, reads the status line and headers,
/// and skips the body (Content-Length or chunked). Far cheaper per request than HttpClient, which matters when the
/// generator shares two cores with the API and PostgreSQL.
/// </summary>
public sealed class HttpConnection : IDisposable
{
    private static ReadOnlySpan<byte> HeaderEnd => "\r\n\r\n"u8;
    private static ReadOnlySpan<byte> LineEnd => "\r\n"u8;
    private const int MaxErrorBody = 600;

    private readonly Socket _socket;
    private byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    private HttpConnection(Socket socket) => _socket = socket;

    public static async Task<HttpConnection> ConnectAsync(IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endpoint, cancellationToken);
            return new HttpConnection(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async Task<HttpAnswer> SendAsync(ReadOnlyMemory<byte> request, CancellationToken cancellationToken)
    {
        while (!request.IsEmpty)
        {
            var sent = await _socket.SendAsync(request, SocketFlags.None, cancellationToken);
            request = request[sent..];
        }

        int headerEnd;
        while ((headerEnd = _buffer.AsSpan(_start, _end - _start).IndexOf(HeaderEnd)) < 0)
        {
            await FillAsync(cancellationToken);
        }
        var head = Encoding.ASCII.GetString(_buffer, _start, headerEnd);
        _start += headerEnd + HeaderEnd.Length;

        var lines = head.Split("\r\n");
        var statusParts = lines[0].Split(' ', 3);
        if (statusParts.Length < 2 || !int.TryParse(statusParts[1], out var status))
        {
            throw new IOException($"Not an HTTP status line: {lines[0]}");
        }
        long contentLength = -1;
        var chunked = false;
        var closes = false;
        string? etag = null;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':');
            if (colon <= 0) continue;
            var name = line.AsSpan(0, colon).Trim();
            var value = line.AsSpan(colon + 1).Trim();
            if (name.Equals("content-length", StringComparison.OrdinalIgnoreCase)) contentLength = long.Parse(value);
            else if (name.Equals("transfer-encoding", StringComparison.OrdinalIgnoreCase))
                chunked = value.Contains("chunked", StringComparison.OrdinalIgnoreCase);
            else if (name.Equals("connection", StringComparison.OrdinalIgnoreCase))
                closes = value.Contains("close", StringComparison.OrdinalIgnoreCase);
            else if (name.Equals("etag", StringComparison.OrdinalIgnoreCase)) etag = value.ToString();
        }

        var errorBody = status >= 400 ? new StringBuilder() : null;
        if (status is 204 or 304 || status < 200)
        {
            // No body.
        }
        else if (chunked)
        {
            while (true)
            {
                var sizeLine = await ReadLineAsync(cancellationToken);
                var semicolon = sizeLine.IndexOf(';');
                var size = Convert.ToInt64(semicolon >= 0 ? sizeLine[..semicolon] : sizeLine, 16);
                if (size == 0)
                {
                    while ((await ReadLineAsync(cancellationToken)).Length != 0)
                    {
                        // Trailers, if any.
                    }
                    break;
                }
                await SkipAsync(size, errorBody, cancellationToken);
                await ReadLineAsync(cancellationToken);
            }
        }
        else if (contentLength >= 0)
        {
            await SkipAsync(contentLength, errorBody, cancellationToken);
        }
        else
        {
            // Neither length nor chunks: the body ends when the server closes.
            closes = true;
        }
        return new HttpAnswer(status, etag, closes, errorBody?.ToString());
    }

    private async Task FillAsync(CancellationToken cancellationToken)
    {
        if (_start == _end)
        {
            _start = _end = 0;
        }
        else if (_end == _buffer.Length)
        {
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }
            else
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }
        }
        var read = await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken);
        if (read == 0) throw new IOException("The server closed the connection.");
        _end += read;
    }

    private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        int end;
        while ((end = _buffer.AsSpan(_start, _end - _start).IndexOf(LineEnd)) < 0)
        {
            await FillAsync(cancellationToken);
        }
        var line = Encoding.ASCII.GetString(_buffer, _start, end);
        _start += end + LineEnd.Length;
        return line;
    }

    private async Task SkipAsync(long count, StringBuilder? capture, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            if (_start == _end) await FillAsync(cancellationToken);
            var take = (int)Math.Min(count, _end - _start);
            if (capture is not null && capture.Length < MaxErrorBody)
            {
                capture.Append(Encoding.UTF8.GetString(_buffer, _start, Math.Min(take, MaxErrorBody - capture.Length)));
            }
            _start += take;
            count -= take;
        }
    }

    public void Dispose() => _socket.Dispose();
}
