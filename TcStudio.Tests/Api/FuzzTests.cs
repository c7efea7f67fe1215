using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// Generated malformed requests over every route the application maps (read from its EndpointDataSource, so a new
/// route is fuzzed without anyone listing it): broken route values, query values, headers, bodies and credentials,
/// at least one of them per request. Nothing may answer 5xx, and no request that got a 4xx may change any table
/// (every table of the system database is fingerprinted before and after each request). The seed is fixed and
/// printed; TCSTUDIO_FUZZ_SEED replays another.
/// </summary>
public sealed class FuzzTests(FuzzTests.Fixture api) : IClassFixture<FuzzTests.Fixture>
{
    public const int DefaultSeed = 20261129;
    public const int RequestCount = 1600;

    public sealed class Fixture(PostgresServer server) : WorkspaceApiFixture(server)
    {
        // One size sample at start and none during the run: the sampler's table stays still.
        protected override IEnumerable<KeyValuePair<string, string?>> ExtraSettings => [new("Database:SizeSampleInterval", "1.00:00:00")];
    }

    private sealed record Target(string Method, string Pattern, MethodInfo Handler, IReadOnlyList<(string Name, Type Type)> Query, Type? Body);

    private sealed record Context(string Slug, string OtherSlug, Guid UserId, string AdminToken, string UserToken);

    [Fact]
    public async Task Malformed_requests_over_every_route_never_get_a_5xx_and_a_4xx_never_changes_a_table()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TCSTUDIO_FUZZ_SEED"), out var s) ? s : DefaultSeed;
        var output = TestContext.Current.TestOutputHelper;
        output?.WriteLine($"fuzz seed {seed} (set TCSTUDIO_FUZZ_SEED to replay another)");

        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "fuzz");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "p",
            "CREATE FUNCTION p(n integer DEFAULT 1) RETURNS integer LANGUAGE sql AS $$ SELECT n $$;");
        await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/p/publish?env=dev", null));
        var otherSlug = ApiFixture.NewSlug("fuzz-other");
        await HttpAssert.JsonAsync(await admin.PostAsJsonAsync("/api/workspaces", new { name = "Other", slug = otherSlug }), HttpStatusCode.Created);
        var context = new Context(slug, otherSlug, await api.ScalarAsync<Guid>("SELECT id FROM users WHERE username = 'user'"),
            await api.LoginAsync("admin", ApiFixture.AdminPassword), await api.LoginAsync("user", ApiFixture.UserPassword));
        await IdempotencyTests.WaitUntilAsync(async () => await api.ScalarAsync<long>("SELECT count(*) FROM database_size_samples") > 0);

        var targets = Targets();
        Assert.True(targets.Count >= 30, $"only {targets.Count} routes found");
        var snapshot = await SnapshotQueryAsync();
        using var client = api.CreateAnonymousClient();
        var random = new Random(seed);
        var statuses = new Dictionary<int, int>();
        var perRoute = targets.ToDictionary(t => $"{t.Method} {t.Pattern}", _ => 0);
        var failures = new List<string>();
        var watch = Stopwatch.StartNew();

        var before = await FingerprintAsync(snapshot);
        for (var i = 0; i < RequestCount; i++)
        {
            var target = targets[i % targets.Count];
            var (request, description) = Generate(random, target, context);
            HttpResponseMessage response;
            try
            {
                // Headers only: an event stream that was accepted never ends, and its status is what is checked.
                response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            }
            catch (Exception e)
            {
                failures.Add($"#{i} {description}: the request threw {e.GetType().Name}: {e.Message}");
                continue;
            }
            using var answered = response;
            var status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            perRoute[$"{target.Method} {target.Pattern}"]++;
            var after = await FingerprintAsync(snapshot);
            if (status >= 500)
            {
                failures.Add($"#{i} {description} → {status}: {Truncate(await response.Content.ReadAsStringAsync(), 400)}");
            }
            else if (status >= 400 && response.Content.Headers.ContentType?.MediaType == "application/problem+json"
                     && HttpAssert.MissingCode(await response.Content.ReadAsStringAsync()) is { } missing)
            {
                failures.Add($"#{i} {description} → {status}: {Truncate(missing, 400)}");
            }
            if (status is >= 400 and < 500 && !Same(after, before))
            {
                var changed = after.Keys.Where(k => after[k] != before.GetValueOrDefault(k)).ToList();
                failures.Add($"#{i} {description} → {status} but changed {string.Join(", ", changed)}");
            }
            before = after;
            if (failures.Count >= 20) break;
        }

        output?.WriteLine($"{statuses.Values.Sum()} requests over {targets.Count} routes in {watch.Elapsed.TotalSeconds:0.0} s; statuses: "
            + string.Join(", ", statuses.OrderBy(p => p.Key).Select(p => $"{p.Key}×{p.Value}")));
        Assert.True(failures.Count == 0, $"seed {seed}:\n" + string.Join("\n", failures));
        Assert.All(perRoute, route => Assert.True(route.Value >= 10, $"{route.Key} got only {route.Value} requests"));
        Assert.True(statuses.Where(p => p.Key is >= 400 and < 500).Sum(p => p.Value) >= RequestCount * 8 / 10,
            "the generator should mostly produce requests that are refused");
    }

    // ---- Routes ----

    private List<Target> Targets()
    {
        var targets = new List<Target>();
        foreach (var endpoint in api.Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            var pattern = endpoint.RoutePattern.RawText ?? "";
            var handler = endpoint.Metadata.GetMetadata<MethodInfo>();
            foreach (var method in endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"])
            {
                if (handler is null)
                {
                    targets.Add(new Target(method, pattern,
                        typeof(FuzzTests).GetMethod(nameof(Targets), BindingFlags.NonPublic | BindingFlags.Instance)!, [], null));
                    continue;
                }
                var query = InputHygieneTests.QueryParameters(handler)
                    .Where(p => !pattern.Contains("{" + p.Name, StringComparison.OrdinalIgnoreCase)).ToList();
                var body = handler.GetParameters().Select(p => p.ParameterType)
                    .FirstOrDefault(t => t.Namespace?.StartsWith("TcStudio.Api", StringComparison.Ordinal) == true
                        && t.Name.EndsWith("Request", StringComparison.Ordinal) && t.GetCustomAttribute<AsParametersAttribute>() is null
                        && !t.Name.EndsWith("ListRequest", StringComparison.Ordinal) && !t.Name.EndsWith("PageRequest", StringComparison.Ordinal));
                targets.Add(new Target(method, pattern, handler, query, body));
            }
        }
        return targets.OrderBy(t => t.Pattern, StringComparer.Ordinal).ThenBy(t => t.Method, StringComparer.Ordinal).ToList();
    }

    // ---- Generation: every request gets at least one thing wrong ----

    // No %00 in paths: the in-memory server refuses to send it at all (Kestrel answers 400 to it on the wire).
    private static readonly string[] BadSegments =
    [
        "%2e%2e", "..", ".", "%2E", "%01", "%ff", "a%2fb", "%E2%80%AE", "%C0%AE%C0%AE", "%ED%A0%80", "'%20OR%201=1--", "NaN", "-1",
        "%20", "null", "%C2%85", "%EF%BB%BF", "x%0Ay", new string('a', 300), "%F0%9F%98%80", "%",
    ];

    private static readonly string[] BadNumbers = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-1", "0", "99999999999999999999", "", "abc",
        "1.5", "0x10", "%00"];

    private static readonly string[] BadStrings =
    [
        "", " ", "%00", new string('s', 5000), "%ED%A0%80", "%C2%85", "%E2%80%AE", "'", "\"", "%0A", "NaN", "null", "..%2F..", "true",
    ];

    private static readonly string[] BadETags = ["bogus", "159648", "W/*", "*, \"1\"", "\"a", "w/\"1\"", "", ",", "\"a\" \"b\""];

    private static readonly string[] BadContentTypes =
    [
        "application/json; charset=latin1", "application/json; charset=utf-16", "text/plain", "application/xml", "multipart/form-data; boundary=x",
        "application/json; charset=\"iso-8859-1\"", "application/x-www-form-urlencoded", "garbage", "application/json; charset=",
    ];

    private (HttpRequestMessage Request, string Description) Generate(Random random, Target target, Context context)
    {
        var mutations = new List<string>();
        // Pick which parts go wrong; at least one always does.
        var wrongRoute = target.Pattern.Contains('{') && random.Next(4) == 0;
        var wrongQuery = target.Query.Count > 0 && random.Next(3) == 0;
        var wrongHeader = random.Next(5) == 0;
        var hasBody = target.Method is "POST" or "PUT" or "PATCH";
        var wrongBody = hasBody && random.Next(2) == 0;
        var wrongAuth = random.Next(10) == 0;
        if (!(wrongRoute || wrongQuery || wrongHeader || wrongBody || wrongAuth))
        {
            switch (random.Next(hasBody ? 4 : 3))
            {
                case 0: wrongHeader = true; break;
                case 1 when target.Pattern.Contains('{'): wrongRoute = true; break;
                case 2 when target.Query.Count > 0: wrongQuery = true; break;
                case 3: wrongBody = true; break;
                default: wrongAuth = true; break;
            }
        }

        var path = FillRoute(random, target.Pattern, context, wrongRoute, mutations);
        var query = new List<string>();
        foreach (var (name, type) in target.Query)
        {
            if (wrongQuery && random.Next(2) == 0)
            {
                var values = InputHygieneTests.IsNumeric(type) ? BadNumbers : type == typeof(bool?) ? ["maybe", "NaN", "2", "yes"] : BadStrings;
                var value = values[random.Next(values.Length)];
                query.Add($"{name}={value}");
                if (random.Next(5) == 0) query.Add($"{name}={values[random.Next(values.Length)]}");
                mutations.Add($"query {name}={Truncate(value, 40)}");
            }
            else if (random.Next(3) == 0)
            {
                query.Add($"{name}={ValidQueryValue(name, type)}");
            }
        }
        if (wrongQuery && mutations.All(m => !m.StartsWith("query", StringComparison.Ordinal)) && target.Query.Count > 0)
        {
            var (name, type) = target.Query[random.Next(target.Query.Count)];
            var values = InputHygieneTests.IsNumeric(type) ? BadNumbers.Take(5).ToArray() : type == typeof(bool?) ? ["maybe"] : ["%00", "%ED%A0%80x"];
            var value = values[random.Next(values.Length)];
            query.Add($"{name}={value}");
            mutations.Add($"query {name}={value}");
        }
        var uri = query.Count == 0 ? path : $"{path}?{string.Join('&', query)}";
        var request = new HttpRequestMessage(new HttpMethod(target.Method), uri);

        // Credentials: usually the admin (so requests reach the handlers), sometimes a plain user, sometimes broken.
        if (wrongAuth)
        {
            var bad = new[] { "Bearer abc", "Bearer " + context.AdminToken[..^3] + "xyz", "Basic YWRtaW46YWRtaW4=", "Bearer", "" }[random.Next(5)];
            request.Headers.TryAddWithoutValidation("Authorization", bad);
            mutations.Add($"auth '{Truncate(bad, 20)}'");
        }
        else
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", random.Next(6) == 0 ? context.UserToken : context.AdminToken);
        }

        if (wrongHeader)
        {
            switch (random.Next(hasBody ? 4 : 3))
            {
                case 0:
                    var etag = BadETags[random.Next(BadETags.Length)];
                    request.Headers.TryAddWithoutValidation("If-Match", etag);
                    mutations.Add($"If-Match: {etag}");
                    break;
                case 1:
                    var none = BadETags[random.Next(BadETags.Length)];
                    request.Headers.TryAddWithoutValidation("If-None-Match", none);
                    mutations.Add($"If-None-Match: {none}");
                    break;
                case 2:
                    // On a POST a malformed key is refused; elsewhere a valid If-Match on a route without ETags is.
                    if (target.Method == "POST")
                    {
                        var key = new[] { "", "a b", new string('k', 300), "\"x", "k,k" }[random.Next(5)];
                        request.Headers.TryAddWithoutValidation("Idempotency-Key", key);
                        mutations.Add($"Idempotency-Key: '{Truncate(key, 20)}'");
                    }
                    else
                    {
                        request.Headers.TryAddWithoutValidation("If-Match", "bogus");
                        mutations.Add("If-Match: bogus");
                    }
                    break;
                default:
                    wrongBody = true;
                    mutations.Add("content type");
                    break;
            }
        }

        if (hasBody || random.Next(10) == 0)
        {
            var (bytes, contentType, what) = Body(random, target, wrongBody, mutations.Contains("content type"));
            if (bytes is not null)
            {
                var content = new ByteArrayContent(bytes);
                content.Headers.TryAddWithoutValidation("Content-Type", contentType);
                request.Content = content;
            }
            if (what is not null) mutations.Add(what);
        }
        if (mutations.Count == 0)
        {
            request.Headers.TryAddWithoutValidation("If-Match", "W/*");
            mutations.Add("If-Match: W/*");
        }
        return (request, $"{target.Method} {Truncate(uri, 200)} [{string.Join("; ", mutations)}]");
    }

    private static string FillRoute(Random random, string pattern, Context context, bool wrong, List<string> mutations)
    {
        var parameters = System.Text.RegularExpressions.Regex.Matches(pattern, "{[^}]+}").Select(m => m.Value).Distinct().ToList();
        var broken = wrong ? parameters[random.Next(parameters.Count)] : null;
        var path = pattern.TrimEnd('/');
        foreach (var parameter in parameters)
        {
            string value;
            if (parameter == broken)
            {
                value = BadSegments[random.Next(BadSegments.Length)];
                mutations.Add($"route {parameter}={Truncate(value, 30)}");
            }
            else
            {
                value = parameter switch
                {
                    "{slug}" => random.Next(5) == 0 ? context.OtherSlug : context.Slug,
                    "{name}" => random.Next(4) == 0 ? "missing" : "p",
                    "{env}" => random.Next(4) == 0 ? "prod" : "dev",
                    "{username}" => "user",
                    "{id:guid}" => random.Next(2) == 0 ? context.UserId.ToString() : Guid.NewGuid().ToString(),
                    _ => "x",
                };
            }
            path = path.Replace(parameter, value);
        }
        return path.Length == 0 ? "/" : path;
    }

    private static string ValidQueryValue(string name, Type type) => name switch
    {
        "env" => "dev",
        "dialect" => "postgres",
        "status" => "draft",
        _ when type == typeof(bool?) => "false",
        _ when InputHygieneTests.IsNumeric(type) => "1",
        _ => "x",
    };

    private static (byte[]? Bytes, string ContentType, string? Mutation) Body(Random random, Target target, bool wrong, bool wrongContentType)
    {
        var fields = target.Body?.GetProperties().Select(p => (Name: char.ToLowerInvariant(p.Name[0]) + p.Name[1..], p.PropertyType)).ToList() ?? [];
        var valid = new Dictionary<string, object?>();
        foreach (var (name, type) in fields) valid[name] = ValidValue(name, type);
        var json = JsonSerializer.Serialize(valid);
        var contentType = "application/json";

        if (wrongContentType)
        {
            contentType = BadContentTypes[random.Next(BadContentTypes.Length)];
            return (Encoding.Latin1.GetBytes(json.Replace("\"x\"", "\"caf\u00e9\"")), contentType, $"Content-Type: {contentType}");
        }
        if (!wrong) return (Encoding.UTF8.GetBytes(json), contentType, null);

        switch (random.Next(14))
        {
            case 0:
                var broken = new[] { "", "{", "[", "{\"a\":}", "nul", "\"str\"", "123", "[]", "{\"x\": NaN}", "{\"x\": Infinity}", "{'a':1}",
                    "{\"a\":1,}", "/*c*/{}" }[random.Next(13)];
                return (Encoding.UTF8.GetBytes(broken), contentType, $"body '{broken}'");
            case 1 when fields.Count > 0:
                var (dupName, _) = fields[random.Next(fields.Count)];
                var dup = json.TrimEnd('}') + (fields.Count > 0 ? "," : "") + $"\"{dupName.ToUpperInvariant()}\":\"dup\"}}";
                return (Encoding.UTF8.GetBytes(dup), contentType, $"duplicate {dupName}");
            case 2 when fields.Count > 0:
                var (wrongName, wrongType) = fields[random.Next(fields.Count)];
                var other = new object?[] { 123, true, new[] { 1 }, new { a = 1 }, "text", 1.5, -1 }[random.Next(7)];
                valid[wrongName] = other;
                return (Encoding.UTF8.GetBytes(JsonSerializer.Serialize(valid)), contentType,
                    $"{wrongName} as {other?.GetType().Name} for {wrongType.Name}");
            case 3 when fields.Count > 0:
                var (nullName, _) = fields[random.Next(fields.Count)];
                valid[nullName] = null;
                return (Encoding.UTF8.GetBytes(JsonSerializer.Serialize(valid)), contentType, $"{nullName}: null");
            case 4 when fields.Count > 0:
                var (textName, _) = fields[random.Next(fields.Count)];
                var evil = new[] { "\u0000", "\u0085", "\u202e", "\u2028", "\ufeff", "\u200b", "\u0007", new string('z', 200_000) }[random.Next(8)];
                valid[textName] = "a" + evil + "b";
                return (Encoding.UTF8.GetBytes(JsonSerializer.Serialize(valid)), contentType, $"{textName} with U+{(int)evil[0]:X4}");
            case 5 when fields.Count > 0:
                var (loneName, _) = fields[random.Next(fields.Count)];
                var lone = json.Replace($"\"{loneName}\":\"x\"", $"\"{loneName}\":\"a\\ud800b\"");
                return (Encoding.UTF8.GetBytes(lone == json ? json.TrimEnd('}') + ",\"\\udc00\":1}" : lone), contentType,
                    $"{loneName} lone surrogate");
            case 6:
                var big = json.TrimEnd('}') + (fields.Count > 0 ? "," : "") + "\"timeoutSeconds\":1e400,\"n\":-1e999}";
                return (Encoding.UTF8.GetBytes(big), contentType, "1e400");
            case 7:
                return (Encoding.UTF8.GetBytes(new string('[', 300) + new string(']', 300)), contentType, "nesting 300 deep");
            case 8:
                return ([0xC3, 0x28, 0xA0, 0xA1, (byte)'{', 0xFF, (byte)'}'], contentType, "invalid UTF-8");
            case 9:
                return ([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(json.TrimEnd('}') + (fields.Count > 0 ? "," : "") + "\"unknownField\":1}")],
                    contentType, "BOM and an unknown field");
            case 10:
                return (Encoding.UTF8.GetBytes("{\"x\":\"" + new string('y', 1_100_000) + "\"}"), contentType, "body over 1 MiB");
            case 11 when fields.Count > 0:
                var (numberName, _) = fields[random.Next(fields.Count)];
                valid[numberName] = new[] { "NaN", "Infinity", "1e400", "-0" }[random.Next(4)];
                return (Encoding.UTF8.GetBytes(JsonSerializer.Serialize(valid)), contentType, $"{numberName} as a non-finite string");
            case 12:
                return (Encoding.UTF8.GetBytes("[" + json + "]"), contentType, "array instead of object");
            default:
                var missing = fields.Count > 0 ? fields[random.Next(fields.Count)].Name : "x";
                valid.Remove(missing);
                valid["extra_" + random.Next(100)] = 1;
                return (Encoding.UTF8.GetBytes(JsonSerializer.Serialize(valid)), contentType, $"without {missing}, with an unknown field");
        }
    }

    private static object? ValidValue(string name, Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        return name switch
        {
            "role" => "Viewer",
            "server" => "local",
            "sql" => "select 1",
            "password" or "newPassword" => "a-password-123",
            _ when t == typeof(string) => "x",
            _ when t == typeof(bool) => false,
            _ when InputHygieneTests.IsNumeric(t) => 1,
            _ when t == typeof(JsonElement) => new { },
            _ => new { },
        };
    }

    // ---- Table fingerprints ----

    private async Task<string> SnapshotQueryAsync()
    {
        var tables = await api.ColumnAsync(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name");
        Assert.Contains("idempotency_keys", tables);
        // A refused sign-in is recorded on purpose (the throttle counts it): the one write a 4xx makes by design.
        tables.Remove("login_failures");
        return string.Join("\nUNION ALL ", tables.Select(t =>
            $"SELECT '{t}', md5(coalesce(string_agg(md5(x::text), '' ORDER BY md5(x::text)), '')) FROM \"{t}\" x"));
    }

    private async Task<Dictionary<string, string>> FingerprintAsync(string query)
    {
        await using var connection = await api.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(query, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var fingerprint = new Dictionary<string, string>(StringComparer.Ordinal);
        while (await reader.ReadAsync()) fingerprint[reader.GetString(0)] = reader.GetString(1);
        return fingerprint;
    }

    private static bool Same(Dictionary<string, string> a, Dictionary<string, string> b) =>
        a.Count == b.Count && a.All(p => b.TryGetValue(p.Key, out var other) && other == p.Value);

    private static string Truncate(string value, int length) => value.Length <= length ? value : value[..length] + "…";
}
