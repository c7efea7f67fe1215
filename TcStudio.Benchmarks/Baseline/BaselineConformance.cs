using System.Net.Http.Headers;
using System.Text;
using System.Text.RegularExpressions;

namespace TcStudio.Benchmarks.Baseline;

/// <summary>
/// Before any figure is taken, the product and the HTTP baseline must answer the same requests with the same bytes:
/// otherwise the comparison would measure different work. Reads are compared byte for byte (status, ETag header,
/// body), with the same Host header so the next-page links match. Writes create and update two drafts (one on each
/// server) and compare the bodies byte for byte after masking only what must differ: the id, the name, the times.
/// A difference is an ERROR row (so the smoke test, which runs --quick, fails).
/// </summary>
public static partial class BaselineConformance
{
    private const string SameHost = "tcstudio.bench";

    public static async Task<ResultRow> CheckReadsAsync(int scenario, string productUrl, string baselineUrl, string token,
        IReadOnlyList<string> paths)
    {
        var differences = new List<string>();
        foreach (var path in paths)
        {
            var product = await SendAsync(productUrl, token, HttpMethod.Get, path, null, null);
            var baseline = await SendAsync(baselineUrl, token, HttpMethod.Get, path, null, null);
            if (Describe(product) != Describe(baseline)) differences.Add(Difference(path, Describe(product), Describe(baseline)));
        }
        return Row(scenario, $"baseline answers byte-for-byte as the product: {paths.Count} GETs", differences);
    }

    public static async Task<ResultRow> CheckWritesAsync(int scenario, string productUrl, string baselineUrl, string token, string workspace)
    {
        var tag = Guid.NewGuid().ToString("N")[..8];
        var differences = new List<string>();
        var productName = $"cmp_p_{tag}";
        var baselineName = $"cmp_b_{tag}";
        string Body(string name) => $$"""{"name":"{{name}}","sql":"SELECT 1 AS \"one\" -- é <&>"}""";
        var path = $"/api/workspaces/{workspace}/procedures";
        var productCreate = await SendAsync(productUrl, token, HttpMethod.Post, path, Body(productName), null);
        var baselineCreate = await SendAsync(baselineUrl, token, HttpMethod.Post, path, Body(baselineName), null);
        if (Masked(productCreate, productName) != Masked(baselineCreate, baselineName))
        {
            differences.Add(Difference("POST " + path, Masked(productCreate, productName), Masked(baselineCreate, baselineName)));
        }
        const string Update = """{"sql":"SELECT 2 -- edited"}""";
        var productUpdate = await SendAsync(productUrl, token, HttpMethod.Put, $"{path}/{productName}", Update, productCreate.ETag);
        var baselineUpdate = await SendAsync(baselineUrl, token, HttpMethod.Put, $"{path}/{baselineName}", Update, baselineCreate.ETag);
        if (Masked(productUpdate, productName) != Masked(baselineUpdate, baselineName))
        {
            differences.Add(Difference($"PUT {path}/{{name}}", Masked(productUpdate, productName), Masked(baselineUpdate, baselineName)));
        }
        return Row(scenario, "baseline answers byte-for-byte as the product: POST and PUT of a draft (id, name, times masked)", differences);
    }

    private static ResultRow Row(int scenario, string what, List<string> differences) => new()
    {
        Scenario = scenario,
        What = what,
        Verdict = differences.Count == 0 ? Verdict.Met : Verdict.Error,
        Target = "identical",
        Note = differences.Count == 0 ? "identical status, ETag header and body bytes" : string.Join("; ", differences),
    };

    private sealed record Answer(int Status, string? ETag, string Body);

    private static async Task<Answer> SendAsync(string baseUrl, string token, HttpMethod method, string path, string? json, string? ifMatch)
    {
        using var http = new HttpClient { BaseAddress = new Uri(baseUrl) };
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Host = SameHost;
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (ifMatch is not null) request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await http.SendAsync(request);
        return new Answer((int)response.StatusCode, response.Headers.ETag?.ToString(), await response.Content.ReadAsStringAsync());
    }

    private static string Describe(Answer answer) => $"{answer.Status} ETag {answer.ETag ?? "(none)"} {answer.Body}";

    /// <summary>The answer with its id, name, times and ETag values replaced by placeholders.</summary>
    private static string Masked(Answer answer, string name)
    {
        var body = IdProperty().Replace(answer.Body, "\"id\":\"ID\"");
        body = Timestamp().Replace(body, "TIME");
        body = ETagValue().Replace(body, "ETAG");
        body = body.Replace(name, "NAME", StringComparison.Ordinal);
        return $"{answer.Status} ETag {(answer.ETag is null ? "(none)" : "present")} {body}";
    }

    /// <summary>Where the two answers part: 150 characters either side of the first differing one.</summary>
    private static string Difference(string what, string product, string baseline)
    {
        var at = 0;
        while (at < product.Length && at < baseline.Length && product[at] == baseline[at]) at++;
        var from = Math.Max(0, at - 150);
        string Around(string text) => text.Length <= from ? "(ends)" : text.Substring(from, Math.Min(300, text.Length - from));
        return $"{what} differs at character {at}: product …{Around(product)}… | baseline …{Around(baseline)}…";
    }

    [GeneratedRegex("\"id\":\"[0-9a-f-]{36}\"")]
    private static partial Regex IdProperty();

    [GeneratedRegex("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?([+-]\\d\\d:\\d\\d|Z)")]
    private static partial Regex Timestamp();

    [GeneratedRegex("\\\\\"\\d+\\\\\"")]
    private static partial Regex ETagValue();
}
