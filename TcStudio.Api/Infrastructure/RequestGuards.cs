using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Refuses, before routing or binding, request shapes that would otherwise be read in a way the caller did not mean:
/// <list type="bullet">
/// <item>dot segments in the path as sent (<c>..</c>, <c>.</c>, <c>%2e%2e</c>, <c>%2E</c>, …): the server would
/// collapse them and serve another resource than the one named (400);</item>
/// <item>a body declared in a charset other than UTF-8 (<c>charset=latin1</c>): JSON is read as UTF-8 only (415);</item>
/// <item>JSON bodies with a property name twice in one object, compared case-insensitively as binding does
/// (<c>{"name":"a","NAME":"b"}</c>), with escaped lone surrogates (<c>"\ud800"</c>), or with a number out of the
/// range of a double (<c>1e400</c>, which .NET would read as infinity): 400 naming the place.</item>
/// </list>
/// It also buffers the body of a POST sent with an Idempotency-Key and fingerprints the request (method, path,
/// query, body) for <see cref="IdempotentRequests"/>.
/// </summary>
public static class RequestGuards
{
    /// <summary>The fingerprint of a POST with an Idempotency-Key (SHA-256), kept in <see cref="HttpContext.Items"/>.</summary>
    internal const string RequestHashItem = "TcStudio.RequestHash";

    /// <summary>Before routing: dot segments in the path as the client sent it.</summary>
    /// <remarks>
    /// The middleware here take <see cref="RequestDelegate"/> and return its task directly when they let a request
    /// through: no async frame or closure of their own on the hot path.
    /// </remarks>
    public static IApplicationBuilder UseDotSegmentGuard(this IApplicationBuilder app) => app.Use((context, next) =>
        context.Features.Get<IHttpRequestFeature>()?.RawTarget is { } raw && HasDotSegment(raw)
            ? WriteProblemAsync(context, StatusCodes.Status400BadRequest, "The request path is not valid.",
                "The path contains a '.' or '..' segment (plain or percent-encoded such as %2e%2e). Paths are not normalised here; "
                + "send the path of the resource you mean.", "path")
            : next(context));

    /// <summary>After authentication (nobody's body is read before they are known), before binding.</summary>
    public static IApplicationBuilder UseRequestBodyGuard(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        var request = context.Request;
        if (request.Path.StartsWithSegments("/api") && HasBody(request)) return GuardBodyAsync(context, next);
        if (HttpMethods.IsPost(request.Method) && request.Headers.ContainsKey(IdempotentRequests.HeaderName))
        {
            context.Items[RequestHashItem] = Fingerprint(request, []);
        }
        return next(context);
    });

    private static async Task GuardBodyAsync(HttpContext context, RequestDelegate next)
    {
        var request = context.Request;

        MediaTypeHeaderValue? mediaType = null;
        if (request.ContentType is { } contentType && MediaTypeHeaderValue.TryParse(contentType, out var parsed))
        {
            mediaType = parsed;
            if (parsed.Parameters.Any(p => p.Name.Equals("charset", StringComparison.OrdinalIgnoreCase)))
            {
                // Present, even empty ("charset="): only UTF-8 is read; the JSON reader fails on anything it cannot look up.
                var charset = parsed.Charset;
                if (!IsUtf8(charset.ToString()))
                {
                    await WriteProblemAsync(context, StatusCodes.Status415UnsupportedMediaType, "The request body must be UTF-8.",
                        $"The body was declared as charset={charset}; this API reads JSON as UTF-8 only (charset=utf-8, or no charset).",
                        "Content-Type");
                    return;
                }
                // UTF-8 in any spelling ("UTF-8", "utf8", quoted): said once, plainly, for the JSON reader, which
                // would otherwise look the quoted or unusual spellings up as encodings and fail on them.
                var plain = new MediaTypeHeaderValue(parsed.MediaType);
                foreach (var parameter in parsed.Parameters)
                {
                    if (!parameter.Name.Equals("charset", StringComparison.OrdinalIgnoreCase)) plain.Parameters.Add(parameter);
                }
                request.ContentType = plain.ToString();
            }
        }

        var isJson = mediaType is not null && (mediaType.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || mediaType.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase));
        var idempotent = HttpMethods.IsPost(request.Method) && request.Headers.ContainsKey(IdempotentRequests.HeaderName);
        if (!isJson && !idempotent)
        {
            await next(context);
            return;
        }

        request.EnableBuffering(bufferThreshold: 64 * 1024, bufferLimit: ApiDefaults.MaxRequestBodyBytes);
        byte[] body;
        try
        {
            body = await ReadAllAsync(request.Body, context.RequestAborted);
        }
        catch (IOException)
        {
            // Oversized (the buffer limit) or cut off: binding reports it the usual way.
            request.Body.Position = 0;
            await next(context);
            return;
        }
        request.Body.Position = 0;

        if (isJson && FindJsonProblem(body) is { } problem)
        {
            await WriteProblemAsync(context, StatusCodes.Status400BadRequest, "The request body is not valid JSON for this endpoint.",
                "See errors for the place at fault. Nothing was changed.", problem.Path, problem.Message);
            return;
        }
        if (idempotent) context.Items[RequestHashItem] = Fingerprint(request, body);
        await next(context);
    }

    internal static bool HasDotSegment(string rawTarget)
    {
        var path = rawTarget;
        var query = path.IndexOfAny(['?', '#']);
        if (query >= 0) path = path[..query];
        if (!path.StartsWith('/'))
        {
            // absolute-form (http://host/path): the path starts after the authority.
            var scheme = path.IndexOf("://", StringComparison.Ordinal);
            if (scheme < 0) return false;
            var slash = path.IndexOf('/', scheme + 3);
            if (slash < 0) return false;
            path = path[slash..];
        }
        foreach (var segment in path.Split('/'))
        {
            if (segment.Length is 0 or > 9) continue; // ".." is at most "%2e%2e" (6) or mixed forms of it
            var decoded = segment.Replace("%2e", ".", StringComparison.OrdinalIgnoreCase);
            if (decoded is "." or "..") return true;
        }
        return false;
    }

    /// <summary>The server's own answer (HTTP/2 bodies need no Content-Length), else what the headers say.</summary>
    private static bool HasBody(HttpRequest request) =>
        request.HttpContext.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody
        ?? (request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0));

    private static bool IsUtf8(string charset)
    {
        var name = charset.Trim('"', ' ');
        return name.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || name.Equals("utf8", StringComparison.OrdinalIgnoreCase);
    }

    private static async Task<byte[]> ReadAllAsync(Stream body, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await body.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }

    internal sealed record JsonProblem(string Path, string Message);

    /// <summary>One open object or array while scanning: the names seen (objects only) and where it sits.</summary>
    private sealed class Frame(string path, bool isObject)
    {
        public string Path { get; } = path;
        public HashSet<string>? Names { get; } = isObject ? new HashSet<string>(StringComparer.OrdinalIgnoreCase) : null;
        public string? Property { get; set; }
        public int Index { get; set; }

        public string ChildPath => Names is null ? $"{Path}[{Index}]" : Join(Path, Property ?? "");
    }

    /// <summary>
    /// Duplicate property names (case-insensitively, per object) and escaped lone surrogates. Malformed JSON is left to
    /// binding, which reports it in its own words.
    /// </summary>
    internal static JsonProblem? FindJsonProblem(ReadOnlySpan<byte> json)
    {
        if (json.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) json = json[3..];
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        var open = new Stack<Frame>();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject or JsonTokenType.StartArray:
                        var path = open.TryPeek(out var parent) ? parent.ChildPath : "$";
                        open.Push(new Frame(path, reader.TokenType == JsonTokenType.StartObject));
                        break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        open.Pop();
                        if (open.TryPeek(out var container)) container.Index++;
                        break;
                    case JsonTokenType.PropertyName:
                        var name = reader.GetString()!; // throws on an escaped lone surrogate
                        var frame = open.Peek();
                        if (!frame.Names!.Add(name))
                        {
                            return new JsonProblem(Join(frame.Path, name),
                                $"'{name}' appears more than once in this object (names are compared ignoring case, as binding does).");
                        }
                        frame.Property = name;
                        break;
                    default:
                        if (reader.TokenType == JsonTokenType.Number && (!reader.TryGetDouble(out var number) || !double.IsFinite(number)))
                        {
                            return new JsonProblem(open.TryPeek(out var holder) ? holder.ChildPath : "$",
                                "Numbers must be finite: this one is out of range (such as 1e400).");
                        }
                        if (reader.TokenType == JsonTokenType.String && reader.ValueIsEscaped)
                        {
                            try
                            {
                                reader.GetString();
                            }
                            catch (InvalidOperationException)
                            {
                                return new JsonProblem(open.TryPeek(out var owner) ? owner.ChildPath : "$", LoneSurrogate);
                            }
                        }
                        if (open.TryPeek(out var array) && array.Names is null) array.Index++;
                        break;
                }
            }
        }
        catch (JsonException)
        {
            return null;
        }
        catch (InvalidOperationException)
        {
            return new JsonProblem(open.TryPeek(out var owner) ? owner.Path : "$", LoneSurrogate);
        }
        return null;
    }

    private const string LoneSurrogate = "A string holds an escaped lone surrogate (such as \\ud800): that is not Unicode text.";

    private static string Join(string parent, string name) => parent == "$" ? name : $"{parent}.{name}";

    /// <summary>SHA-256 over method, path, query and body: what makes two requests "the same request".</summary>
    internal static byte[] Fingerprint(HttpRequest request, ReadOnlySpan<byte> body)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{request.Method}\n{request.PathBase}{request.Path}\n{request.QueryString}\n"));
        hash.AppendData(body);
        return hash.GetHashAndReset();
    }

    internal static async Task WriteProblemAsync(HttpContext context, int status, string title, string detail, string field,
        string? message = null)
    {
        context.Response.StatusCode = status;
        await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = new Microsoft.AspNetCore.Http.HttpValidationProblemDetails(
                new Dictionary<string, string[]> { [field] = [message ?? detail] })
            {
                Status = status,
                Title = title,
                Detail = detail,
            },
        });
    }
}
