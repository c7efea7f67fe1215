using System.Net;
using System.Net.Http.Json;
using System.Reflection;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.Api;

/// <summary>
/// No input gets a 5xx, and input the API cannot take as meant is refused rather than reinterpreted: non-finite
/// numbers, duplicate JSON keys (ignoring case), invisible or control characters in names, bodies in another
/// charset than UTF-8, dot segments in paths.
/// </summary>
public sealed class InputHygieneTests(WorkspaceApiFixture api) : IClassFixture<WorkspaceApiFixture>
{
    public static readonly string[] NonFinite = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "nan", "∞"];

    [Fact]
    public async Task The_issue_reproductions_non_finite_insight_parameters_are_400_not_500()
    {
        using var admin = await api.AdminAsync();
        foreach (var value in NonFinite)
        {
            await HttpAssert.ValidationProblemAsync(await admin.GetAsync($"/api/admin/database/slow-queries?minMeanMs={Uri.EscapeDataString(value)}"),
                "minMeanMs");
            await HttpAssert.ValidationProblemAsync(
                await admin.GetAsync($"/api/admin/database/long-running?thresholdSeconds={Uri.EscapeDataString(value)}"), "thresholdSeconds");
        }
    }

    /// <summary>Every numeric query parameter of every GET route, found from the endpoints themselves.</summary>
    [Fact]
    public async Task Every_numeric_query_parameter_of_every_route_refuses_non_finite_values_with_a_400_naming_it()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "hyg", "Hygiene");
        var checkedParameters = new List<string>();
        foreach (var endpoint in api.Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            var methods = endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? [];
            if (!methods.Contains("GET") || endpoint.Metadata.GetMetadata<MethodInfo>() is not { } handler) continue;
            var path = FillRoute(endpoint.RoutePattern.RawText!, slug);
            foreach (var (name, type) in QueryParameters(handler).Where(p => IsNumeric(p.Type)))
            {
                checkedParameters.Add($"{endpoint.RoutePattern.RawText}?{name}");
                foreach (var value in NonFinite)
                {
                    var response = await admin.GetAsync($"{path}?{name}={Uri.EscapeDataString(value)}");
                    await HttpAssert.ValidationProblemAsync(response, name);
                }
            }
        }
        Assert.Contains("/api/admin/database/slow-queries?minMeanMs", checkedParameters);
        Assert.Contains(checkedParameters, p => p.StartsWith("/api/workspaces/{slug}/procedures", StringComparison.Ordinal)
            && p.EndsWith("?pageSize", StringComparison.Ordinal));
        Assert.True(checkedParameters.Count >= 8, string.Join(", ", checkedParameters));
    }

    internal static string FillRoute(string pattern, string slug) => pattern
        .Replace("{slug}", slug).Replace("{name}", "p").Replace("{env}", "dev").Replace("{username}", "user")
        .Replace("{id:guid}", Guid.Empty.ToString()).TrimEnd('/');

    internal static IEnumerable<(string Name, Type Type)> QueryParameters(MethodInfo handler)
    {
        foreach (var parameter in handler.GetParameters())
        {
            if (parameter.GetCustomAttribute<AsParametersAttribute>() is not null)
            {
                // The record's constructor parameters are what binds (computed properties such as Skip do not).
                var constructor = parameter.ParameterType.GetConstructors().MaxBy(c => c.GetParameters().Length)!;
                foreach (var bound in constructor.GetParameters())
                {
                    yield return (char.ToLowerInvariant(bound.Name![0]) + bound.Name[1..], bound.ParameterType);
                }
            }
            else if (IsNumeric(parameter.ParameterType) || parameter.ParameterType == typeof(string) || parameter.ParameterType == typeof(bool?))
            {
                yield return (parameter.Name!, parameter.ParameterType);
            }
        }
    }

    internal static bool IsNumeric(Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        return t == typeof(int) || t == typeof(long) || t == typeof(double) || t == typeof(float) || t == typeof(decimal) || t == typeof(short);
    }

    [Fact]
    public async Task Numbers_in_bodies_must_be_finite_even_where_any_json_is_accepted()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "hyg-num");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "halve", """
            CREATE FUNCTION halve(x double precision, y real DEFAULT 1) RETURNS double precision LANGUAGE sql AS $$ SELECT x / 2 $$;
            """);
        await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/halve/publish?env=dev", null));

        foreach (var body in new[]
        {
            """{"parameters":{"x":1e400}}""", """{"parameters":{"x":-1e400}}""", """{"timeoutSeconds":1e400}""",
        })
        {
            var response = await admin.PostAsync($"/api/workspaces/{slug}/procedures/halve/execute?env=dev", RawJson.Content(body));
            await HttpAssert.ProblemAsync(response, HttpStatusCode.BadRequest);
        }
        // Strings name non-finite doubles too; they are refused as values of the parameter's type.
        foreach (var value in new[] { "NaN", "Infinity", "-Infinity", "1e400" })
        {
            await HttpAssert.ValidationProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/halve/execute?env=dev",
                RawJson.Content($$$"""{"parameters":{"x":"{{{value}}}"}}""")), "parameters.x");
            await HttpAssert.ValidationProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/halve/execute?env=dev",
                RawJson.Content($$$"""{"parameters":{"x":1,"y":"{{{value}}}"}}""")), "parameters.y");
        }
        await HttpAssert.ProblemAsync(await admin.PatchAsync($"/api/workspaces/{slug}", RawJson.Content("""{"settings":{"big":1e400}}""")),
            HttpStatusCode.BadRequest);
        var fine = await HttpAssert.ReadAsync<ExecutionResult>(await admin.PostAsync($"/api/workspaces/{slug}/procedures/halve/execute?env=dev",
            RawJson.Content("""{"parameters":{"x":1e300}}""")));
        Assert.Equal(5e299, ((System.Text.Json.JsonElement)fine.ResultSets[0].Rows[0][0]!).GetDouble());
    }


    [Fact]
    public async Task Duplicate_json_keys_even_differing_only_in_case_are_400_and_create_nothing()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "hyg", "Hygiene");

        var issue = await HttpAssert.ValidationProblemAsync(
            await user.PostAsync($"/api/workspaces/{slug}/procedures", RawJson.Content("""{"name":"a","sql":"select 1","NAME":"zz"}""")), "NAME");
        Assert.Contains("more than once", issue.ToString());
        await HttpAssert.ValidationProblemAsync(await user.PostAsync($"/api/workspaces/{slug}/procedures",
            RawJson.Content("""{"name":"a","sql":"x","name":"b"}""")), "name");
        await HttpAssert.ValidationProblemAsync(await user.PatchAsync($"/api/workspaces/{slug}",
            RawJson.Content("""{"settings":{"theme":"dark","Theme":"light"}}""")), "settings.Theme");
        await HttpAssert.ValidationProblemAsync(await user.PatchAsync($"/api/workspaces/{slug}",
            RawJson.Content("""{"settings":{"list":[{"a":1,"A":2}]}}""")), "settings.list[0].A");
        // Escapes do not hide a duplicate, and a byte order mark in front does not either.
        await HttpAssert.ValidationProblemAsync(await user.PostAsync($"/api/workspaces/{slug}/procedures",
            RawJson.Content("""{"name":"a","sql":"select 1","n\u0061me":"b"}""")), "name");
        await HttpAssert.ValidationProblemAsync(await user.PostAsync($"/api/workspaces/{slug}/procedures",
            new ByteArrayContent([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("""{"name":"a","sql":"s","Sql":"t"}""")])
            { Headers = { ContentType = new("application/json") } }), "Sql");
        // The same name in different objects is fine.
        await HttpAssert.JsonAsync(await user.PatchAsync($"/api/workspaces/{slug}", RawJson.Content("""{"settings":{"a":{"x":1},"b":{"x":2}}}""")));

        Assert.Equal(0L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));
    }

    public static readonly string[] Invisible =
    [
        "\u0085", "\u009b", "\u2028", "\u2029", "\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200d", "\ufeff", "\u200f", "\t", "\n", "\u0007",
    ];

    [Fact]
    public async Task Names_refuse_control_bidi_zero_width_and_byte_order_mark_characters_and_change_nothing()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "hyg", "Hygiene");
        var before = await api.ScalarAsync<string>("SELECT xmin::text || name FROM workspaces WHERE slug = @s", ("s", slug));
        var users = await api.ScalarAsync<long>("SELECT count(*) FROM users");
        var me = (await HttpAssert.ReadAsync<MeResponse>(await admin.GetAsync("/api/me"))).Id;

        foreach (var c in Invisible)
        {
            var name = $"Evil{c}name";
            await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync("/api/workspaces", new { name, slug = ApiFixture.NewSlug("inv") }),
                "name");
            await HttpAssert.ValidationProblemAsync(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}", new { name }), "name");
            await HttpAssert.ValidationProblemAsync(await admin.PatchAsJsonAsync($"/api/users/{me}", new { displayName = name }), "displayName");
            await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync("/api/users",
                new { username = $"u{c}ser", password = "a-password-123", role = "User", displayName = "x" }), "username");
            await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync("/api/users",
                new { username = "fine-user-" + Guid.NewGuid().ToString("N")[..6], password = "a-password-123", role = "User", displayName = name }),
                "displayName");
            await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
                new { name = $"p{c}", sql = "select 1" }), "name");
            await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
                new { name = $"e{c}", server = "local", databaseName = "x_db" }), "name");
        }
        // A trailing line break used to pass the patterns ($ matches before a final newline).
        await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync("/api/users",
            new { username = "trailing\n", password = "a-password-123", role = "User" }), "username");
        await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync("/api/workspaces", new { name = "n", slug = "trailing\n" }), "slug");
        await HttpAssert.ValidationProblemAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "env", server = "local", databaseName = "db_name\n" }), "databaseName");

        // Lone surrogates are not text: refused wherever they appear.
        await HttpAssert.ValidationProblemAsync(await admin.PostAsync("/api/workspaces", RawJson.Content("""{"name":"a\ud800b","slug":"lone-x"}""")),
            "name");
        await HttpAssert.ValidationProblemAsync(await admin.PostAsync("/api/auth/token", RawJson.Content("""{"username":"\udc00","password":"x"}""")),
            "username");

        // Names people write in any script are fine.
        await HttpAssert.JsonAsync(await admin.PatchAsJsonAsync($"/api/users/{me}",
            new { displayName = "Zoë Ångström 山田 👩‍💻".Replace("\u200d", "") }));
        Assert.Equal(before, await api.ScalarAsync<string>("SELECT xmin::text || name FROM workspaces WHERE slug = @s", ("s", slug)));
        Assert.Equal(users, await api.ScalarAsync<long>("SELECT count(*) FROM users"));
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspaces WHERE slug LIKE 'inv-%' OR slug = 'lone-x'"));
    }

    [Fact]
    public async Task A_body_declared_in_another_charset_than_utf8_is_415_and_creates_nothing()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "hyg", "Hygiene");
        foreach (var charset in new[] { "latin1", "iso-8859-1", "utf-16", "windows-1252", "\"latin1\"" })
        {
            var content = new ByteArrayContent(Encoding.Latin1.GetBytes("""{"name":"caf\u00e9","sql":"select 1"}"""));
            content.Headers.TryAddWithoutValidation("Content-Type", $"application/json; charset={charset}");
            var response = await user.PostAsync($"/api/workspaces/{slug}/procedures", content);
            await HttpAssert.ProblemAsync(response, HttpStatusCode.UnsupportedMediaType);
        }
        Assert.Equal(0L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));

        var accepted = new[] { "utf-8", "UTF-8", "\"utf-8\"" };
        for (var i = 0; i < accepted.Length; i++)
        {
            var charset = accepted[i];
            var content = new StringContent($$"""{"name":"p_{{i}}","sql":"select 1"}""", Encoding.UTF8);
            content.Headers.Remove("Content-Type");
            content.Headers.TryAddWithoutValidation("Content-Type", $"application/json; charset={charset}");
            Assert.Equal(HttpStatusCode.Created, (await user.PostAsync($"/api/workspaces/{slug}/procedures", content)).StatusCode);
        }
    }
}

/// <summary>
/// Requests as Kestrel receives them off the wire: encoded dot segments are refused, not collapsed into another
/// resource; an empty If-Match is malformed, not absent.
/// </summary>
public sealed class WireLevelInputTests(KestrelApiFixture api) : IClassFixture<KestrelApiFixture>
{
    [Fact]
    public async Task An_empty_if_match_on_the_wire_is_400_and_changes_nothing()
    {
        var token = await api.LoginAsync("admin", ApiFixture.AdminPassword);
        using var admin = api.CreateAnonymousClient();
        admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        var slug = ApiFixture.NewSlug("empty");
        await HttpAssert.JsonAsync(await admin.PostAsJsonAsync("/api/workspaces", new { name = "Empty", slug }), HttpStatusCode.Created);

        foreach (var header in new[] { "If-Match", "If-None-Match" })
        {
            var (status, response) = await RawHttp.SendAsync(api.ServerAddress,
                RawHttp.Request("DELETE", $"/api/workspaces/{slug}", api.ServerAddress,
                [("Authorization", $"Bearer {token}"), (header, "")]));
            Assert.True(status == 400, response);
            Assert.Contains(header, response);
        }
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"/api/workspaces/{slug}")).StatusCode);

        var (keyStatus, keyResponse) = await RawHttp.SendAsync(api.ServerAddress, RawHttp.Request("POST", $"/api/workspaces/{slug}/procedures",
            api.ServerAddress, [("Authorization", $"Bearer {token}"), ("Idempotency-Key", "")], """{"name":"p","sql":"select 1"}"""));
        Assert.True(keyStatus == 400, keyResponse);
        Assert.Contains("Idempotency-Key", keyResponse);
        Assert.Equal(0L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));
    }

    [Fact]
    public async Task Encoded_dot_segments_are_400_instead_of_serving_the_parent_resource()
    {
        var token = await api.LoginAsync("admin", ApiFixture.AdminPassword);
        using var admin = api.CreateAnonymousClient();
        admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        var slug = ApiFixture.NewSlug("dots");
        await HttpAssert.JsonAsync(await admin.PostAsJsonAsync("/api/workspaces", new { name = "Dots", slug }), HttpStatusCode.Created);

        // The issue: GET …/members/%2e%2e was collapsed to …/ and returned the workspace.
        foreach (var target in new[]
        {
            $"/api/workspaces/{slug}/members/%2e%2e", $"/api/workspaces/{slug}/members/%2E%2E", $"/api/workspaces/{slug}/members/.%2e",
            $"/api/workspaces/{slug}/members/%2e", $"/api/workspaces/{slug}/members/../members", "/api/workspaces/x/%2e%2e/%2e%2e/roles",
        })
        {
            var (status, response) = await RawHttp.SendAsync(api.ServerAddress, RawHttp.Request("GET", target, api.ServerAddress,
                [("Authorization", $"Bearer {token}")]));
            Assert.True(status == 400, $"{target}: {response}");
            Assert.Contains("application/problem+json", response);
            Assert.DoesNotContain($"\"slug\":\"{slug}\"", response);
        }
        var (ok, _) = await RawHttp.SendAsync(api.ServerAddress, RawHttp.Request("GET", $"/api/workspaces/{slug}/members", api.ServerAddress,
            [("Authorization", $"Bearer {token}")]));
        Assert.Equal(200, ok);
    }
}
