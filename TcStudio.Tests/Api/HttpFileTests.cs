using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// TcStudio.Api/TcStudio.Api.http is a working tour of the API: every request in it, sent in order against the real
/// API (with a workspace server), gets the status its <c># expect</c> comment names, and every operation in the
/// OpenAPI document has a request in the file.
/// </summary>
public sealed partial class HttpFileTests(WorkspaceApiFixture api) : IClassFixture<WorkspaceApiFixture>
{
    private static readonly string FilePath = Path.Combine(RepositoryPaths.Root, "TcStudio.Api", "TcStudio.Api.http");

    [Fact]
    public async Task Every_request_in_the_http_file_gets_its_expected_status()
    {
        var file = HttpFile.Parse(await File.ReadAllTextAsync(FilePath));
        Assert.True(file.Requests.Count >= 40, $"only {file.Requests.Count} requests parsed");
        Assert.All(file.Requests, r => Assert.True(r.ExpectedStatus is not null, $"'{r.Title}' has no '# expect' comment"));

        // What differs on a test server: its own address, the fixture's admin password and a database name of its own.
        file.Variables["baseUrl"] = "http://localhost";
        file.Variables["password"] = ApiFixture.AdminPassword;
        file.Variables["database"] = api.NewDatabaseName("httpfile");

        using var client = api.CreateAnonymousClient();
        var responses = new Dictionary<string, (HttpResponseMessage Response, JsonElement? Body)>(StringComparer.Ordinal);
        var failures = new List<string>();
        foreach (var request in file.Requests)
        {
            string Resolve(string text) => file.Substitute(text, responses);
            using var message = new HttpRequestMessage(new HttpMethod(request.Method), Resolve(request.Url));
            if (request.Body is { } body)
            {
                message.Content = new StringContent(Resolve(body), Encoding.UTF8);
                message.Content.Headers.ContentType = null;
            }
            foreach (var (name, value) in request.Headers)
            {
                if (!message.Headers.TryAddWithoutValidation(name, Resolve(value)))
                {
                    message.Content?.Headers.TryAddWithoutValidation(name, Resolve(value));
                }
            }
            // Headers only: an event stream never ends; its status is what is checked.
            var response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
            var streaming = response.Content.Headers.ContentType?.MediaType == "text/event-stream";
            var text = streaming ? "" : await response.Content.ReadAsStringAsync();
            if ((int)response.StatusCode != request.ExpectedStatus)
            {
                failures.Add($"'{request.Title}' ({request.Method} {request.Url}): "
                    + $"expected {request.ExpectedStatus}, got {(int)response.StatusCode} {text}");
                break; // later requests build on this one
            }
            JsonElement? json = text.Length > 0 && response.Content.Headers.ContentType?.MediaType?.EndsWith("json") == true
                ? JsonDocument.Parse(text).RootElement : null;
            if (request.Name is { } requestName) responses[requestName] = (response, json);
            else response.Dispose();
        }
        foreach (var (response, _) in responses.Values) response.Dispose();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public async Task Every_operation_of_the_openapi_document_has_a_request_in_the_http_file()
    {
        var file = HttpFile.Parse(await File.ReadAllTextAsync(FilePath));
        using var client = api.CreateAnonymousClient();
        using var document = JsonDocument.Parse(await client.GetStringAsync("/openapi/v1.json"));
        var covered = file.Requests.Select(r => (r.Method, Path: r.Url.Replace("{{baseUrl}}", "").Split('?')[0])).ToList();
        var missing = new List<string>();
        foreach (var path in document.RootElement.GetProperty("paths").EnumerateObject())
        {
            var pattern = new Regex("^" + Regex.Replace(Regex.Escape(path.Name).Replace(@"\{", "{"), @"\{[^}]+}", @"[^/]+") + "/?$");
            foreach (var operation in path.Value.EnumerateObject())
            {
                var method = operation.Name.ToUpperInvariant();
                if (!covered.Any(c => c.Method == method && pattern.IsMatch(c.Path))) missing.Add($"{method} {path.Name}");
            }
        }
        Assert.True(missing.Count == 0, "routes without a request in TcStudio.Api.http:\n" + string.Join("\n", missing));
    }

    /// <summary>One request of a .http file: its title (the text after ###), name, expected status, request line, headers and body.</summary>
    public sealed record HttpFileRequest(string Title, string? Name, int? ExpectedStatus, string Method, string Url,
        List<(string Name, string Value)> Headers, string? Body);

    /// <summary>
    /// The common subset of the .http format that VS Code's REST Client and Visual Studio both read: <c>###</c>
    /// between requests, <c>@name = value</c> variables (global, resolved when used), <c># @name x</c> request names,
    /// <c>{{x.response.body.$.path}}</c> and <c>{{x.response.headers.Name}}</c>, comments with # or //.
    /// </summary>
    public sealed partial class HttpFile
    {
        public Dictionary<string, string> Variables { get; } = new(StringComparer.Ordinal);
        public List<HttpFileRequest> Requests { get; } = [];

        public static HttpFile Parse(string text)
        {
            var file = new HttpFile();
            var blocks = Regex.Split(text.Replace("\r\n", "\n"), @"^###[^\n]*$", RegexOptions.Multiline);
            var titles = Regex.Matches(text.Replace("\r\n", "\n"), @"^###([^\n]*)$", RegexOptions.Multiline).Select(m =>
                m.Groups[1].Value.Trim()).ToList();
            for (var b = 0; b < blocks.Length; b++)
            {
                var lines = blocks[b].Split('\n');
                string? name = null;
                int? expect = null;
                var i = 0;
                string? requestLine = null;
                for (; i < lines.Length; i++)
                {
                    var line = lines[i].Trim();
                    if (line.Length == 0) continue;
                    if (NameComment().Match(line) is { Success: true } n) { name = n.Groups[1].Value; continue; }
                    if (ExpectComment().Match(line) is { Success: true } e) { expect = int.Parse(e.Groups[1].Value); continue; }
                    if (line.StartsWith('#') || line.StartsWith("//")) continue;
                    if (VariableLine().Match(line) is { Success: true } v) { file.Variables[v.Groups[1].Value] = v.Groups[2].Value.Trim(); continue; }
                    requestLine = line;
                    i++;
                    break;
                }
                if (requestLine is null) continue;
                var parts = requestLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var headers = new List<(string, string)>();
                for (; i < lines.Length && lines[i].Trim().Length > 0; i++)
                {
                    var colon = lines[i].IndexOf(':');
                    headers.Add((lines[i][..colon].Trim(), lines[i][(colon + 1)..].Trim()));
                }
                var body = string.Join("\n", lines.Skip(i)).Trim();
                file.Requests.Add(new HttpFileRequest(b > 0 ? titles[b - 1] : "", name, expect, parts[0], parts[1], headers,
                    body.Length > 0 ? body : null));
            }
            return file;
        }

        public string Substitute(string text, IReadOnlyDictionary<string, (HttpResponseMessage Response, JsonElement? Body)> responses, int depth = 0)
        {
            Assert.True(depth < 10, $"variables refer to each other in a loop: {text}");
            return Reference().Replace(text, match =>
            {
                var reference = match.Groups[1].Value.Trim();
                if (Variables.TryGetValue(reference, out var value)) return Substitute(value, responses, depth + 1);
                var response = ResponseReference().Match(reference);
                Assert.True(response.Success, $"unknown variable {{{{{reference}}}}}");
                Assert.True(responses.TryGetValue(response.Groups[1].Value, out var named), $"no earlier request named '{response.Groups[1].Value}'");
                if (response.Groups[2].Value == "headers")
                {
                    var header = response.Groups[3].Value;
                    var values = named.Response.Headers.TryGetValues(header, out var h) ? h
                        : named.Response.Content.Headers.TryGetValues(header, out var c) ? c : null;
                    Assert.True(values is not null, $"response '{response.Groups[1].Value}' has no header {header}");
                    return string.Join(", ", values!);
                }
                var element = named.Body ?? throw new InvalidOperationException($"response '{response.Groups[1].Value}' has no JSON body");
                foreach (Match step in PathStep().Matches(response.Groups[3].Value.TrimStart('$')))
                {
                    element = step.Groups[1].Success ? element.GetProperty(step.Groups[1].Value) : element[int.Parse(step.Groups[2].Value)];
                }
                return element.ValueKind == JsonValueKind.String ? element.GetString()! : element.GetRawText();
            });
        }

        [GeneratedRegex(@"^(?:#|//)\s*@name\s+(\S+)$")]
        private static partial Regex NameComment();

        [GeneratedRegex(@"^(?:#|//)\s*expect\s+(\d{3})\b")]
        private static partial Regex ExpectComment();

        [GeneratedRegex(@"^@([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")]
        private static partial Regex VariableLine();

        [GeneratedRegex(@"\{\{([^}]+)\}\}")]
        private static partial Regex Reference();

        [GeneratedRegex(@"^([A-Za-z_][A-Za-z0-9_]*)\.response\.(body|headers)\.(.+)$")]
        private static partial Regex ResponseReference();

        [GeneratedRegex(@"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")]
        private static partial Regex PathStep();
    }
}
