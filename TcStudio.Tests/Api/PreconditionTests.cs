using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Primitives;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Procedures;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// If-Match and If-None-Match are read as RFC 9110 writes them, the same way on every route that accepts them: a
/// malformed value is a 400 naming the header and changes nothing (it used to count as "no If-Match", so stale writes
/// went through), a weak ETag never satisfies If-Match, <c>*</c> means "exists", and routes without ETags refuse them.
/// </summary>
public sealed class PreconditionTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    /// <summary>Every form here is outside the grammar; each must be a 400 on every guarded route.</summary>
    public static readonly string[] MalformedValues =
    [
        "159648",          // a version without quotes (what a client that strips quotes sends)
        "bogus",
        "W/*",
        "*, \"1\"",
        "\"1\", *",
        "w/\"1\"",         // the weak prefix is case-sensitive
        "\"unterminated",
        "\"a\"b",
        "\"a\" \"b\"",     // a missing comma
        ",",
        " ",
        "W/ \"1\"",
        "\"a\"\"b\"",
    ];

    /// <summary>A write guarded by If-Match on a fresh resource, and a probe of that resource's stored state.</summary>
    private sealed record GuardedWrite(string Route, HttpMethod Method, string Path, object? Body, Func<Task<string>> State);

    private async Task<GuardedWrite> ArrangeAsync(string route, HttpClient admin)
    {
        switch (route)
        {
            case "PUT procedure" or "DELETE procedure":
            {
                var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "pre", "Preconditions");
                var name = "p" + Guid.NewGuid().ToString("N")[..8];
                await HttpAssert.ReadAsync<ProcedureDraft>(
                    await admin.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name, sql = "select 1" }), HttpStatusCode.Created);
                var state = () => api.ScalarAsync<string>(
                    "SELECT coalesce((SELECT xmin::text || ':' || sql_draft FROM stored_procedures WHERE name = @n), 'gone')", ("n", name));
                return route == "PUT procedure"
                    ? new GuardedWrite(route, HttpMethod.Put, $"/api/workspaces/{slug}/procedures/{name}", new { sql = "select 2" }, state)
                    : new GuardedWrite(route, HttpMethod.Delete, $"/api/workspaces/{slug}/procedures/{name}", null, state);
            }
            case "PATCH workspace" or "DELETE workspace" or "DELETE workspace ?purge":
            {
                var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "pre", "Preconditions");
                var state = () => api.ScalarAsync<string>(
                    "SELECT coalesce((SELECT xmin::text || ':' || name || ':' || coalesce(deleted_at::text, '-') "
                    + "FROM workspaces WHERE slug = @s), 'gone')",
                    ("s", slug));
                return route switch
                {
                    "PATCH workspace" => new GuardedWrite(route, HttpMethod.Patch, $"/api/workspaces/{slug}", new { name = "renamed" }, state),
                    "DELETE workspace" => new GuardedWrite(route, HttpMethod.Delete, $"/api/workspaces/{slug}", null, state),
                    _ => new GuardedWrite(route, HttpMethod.Delete, $"/api/workspaces/{slug}?purge=true", null, state),
                };
            }
            default:
            {
                var username = "pre-" + Guid.NewGuid().ToString("N")[..10];
                var id = (await HttpAssert.ReadAsync<UserResponse>(
                    await admin.PostAsJsonAsync("/api/users", new { username, password = "a-password-123", role = "User" }),
                    HttpStatusCode.Created)).Id;
                var state = () => api.ScalarAsync<string>(
                    "SELECT xmin::text || ':' || coalesce(display_name, '-') || ':' || coalesce(deleted_at::text, '-') FROM users WHERE id = @id",
                    ("id", id));
                return route switch
                {
                    "PATCH user" => new GuardedWrite(route, HttpMethod.Patch, $"/api/users/{id}", new { displayName = "Renamed" }, state),
                    "DELETE user" => new GuardedWrite(route, HttpMethod.Delete, $"/api/users/{id}", null, state),
                    _ => new GuardedWrite(route, HttpMethod.Put, $"/api/users/{id}/password", new { newPassword = "another-password-1" }, state),
                };
            }
        }
    }

    public static TheoryData<string> GuardedRoutes => new()
    {
        "PUT procedure", "DELETE procedure", "PATCH workspace", "DELETE workspace", "DELETE workspace ?purge",
        "PATCH user", "DELETE user", "PUT user password",
    };

    private static HttpRequestMessage Request(GuardedWrite write, string header, string value)
    {
        var request = new HttpRequestMessage(write.Method, write.Path);
        if (write.Body is not null) request.Content = JsonContent.Create(write.Body);
        Assert.True(request.Headers.TryAddWithoutValidation(header, value));
        return request;
    }

    /// <summary>The header exactly as given (HttpClient would tidy "w/" into "W/").</summary>
    private async Task<HttpResponseMessage> SendRawAsync(HttpClient client, GuardedWrite write, params (string Name, string Value)[] headers) =>
        await RawTestServer.SendAsync(api.Factory, write.Method, write.Path,
            [("Authorization", client.DefaultRequestHeaders.Authorization!.ToString()), .. headers],
            write.Body is null ? null : JsonSerializer.Serialize(write.Body, new JsonSerializerOptions(JsonSerializerDefaults.Web)));

    private static async Task<string> CurrentETagAsync(HttpClient client, GuardedWrite write)
    {
        var path = write.Path.Replace("/password", "").Replace("?purge=true", "");
        var response = await client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response.Headers.ETag!.ToString();
    }

    [Theory]
    [MemberData(nameof(GuardedRoutes))]
    public async Task Every_malformed_if_match_and_if_none_match_is_a_400_naming_the_header_and_changes_nothing(string route)
    {
        using var admin = await api.AdminAsync();
        var write = await ArrangeAsync(route, admin);
        var before = await write.State();

        foreach (var header in new[] { "If-Match", "If-None-Match" })
        {
            foreach (var value in MalformedValues)
            {
                var response = await SendRawAsync(admin, write, (header, value));
                Assert.True(response.StatusCode == HttpStatusCode.BadRequest,
                    $"{route} {header}: '{value}' → {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                var problem = await HttpAssert.ProblemAsync(response, HttpStatusCode.BadRequest);
                Assert.True(problem.GetProperty("errors").TryGetProperty(header, out _), $"{route} {header}: {value} → {problem}");
                Assert.Equal(before, await write.State());
            }
        }

        // Two field lines, one of them "*": also malformed ("*" is the whole value or nothing).
        await HttpAssert.ProblemAsync(await SendRawAsync(admin, write, ("If-Match", "*"), ("If-Match", "\"1\"")), HttpStatusCode.BadRequest);
        Assert.Equal(before, await write.State());
    }

    [Theory]
    [MemberData(nameof(GuardedRoutes))]
    public async Task A_weak_etag_never_satisfies_if_match_and_if_none_match_star_refuses_an_existing_resource(string route)
    {
        using var admin = await api.AdminAsync();
        var write = await ArrangeAsync(route, admin);
        var before = await write.State();
        var etag = await CurrentETagAsync(admin, write);

        await HttpAssert.ProblemAsync(await admin.SendAsync(Request(write, "If-Match", "W/" + etag)), HttpStatusCode.PreconditionFailed);
        await HttpAssert.ProblemAsync(await admin.SendAsync(Request(write, "If-Match", "\"1\", \"2\"")), HttpStatusCode.PreconditionFailed);
        await HttpAssert.ProblemAsync(await admin.SendAsync(Request(write, "If-None-Match", "*")), HttpStatusCode.PreconditionFailed);
        // If-None-Match compares weakly: the weak form of the current tag matches, so the write is refused.
        await HttpAssert.ProblemAsync(await admin.SendAsync(Request(write, "If-None-Match", "W/" + etag)), HttpStatusCode.PreconditionFailed);
        Assert.Equal(before, await write.State());

        // The current tag in a list with others passes, and so does "*": the resource exists.
        var passes = await admin.SendAsync(Request(write, "If-Match", route.Contains("DELETE") ? $"\"1\", {etag}" : "*"));
        Assert.True(passes.IsSuccessStatusCode, $"{route}: {(int)passes.StatusCode} {await passes.Content.ReadAsStringAsync()}");
        Assert.NotEqual(before, await write.State());
    }

    [Fact]
    public async Task The_issue_reproductions_an_unquoted_or_bogus_if_match_no_longer_overwrites_or_deletes()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "pre", "Preconditions");
        var created = await admin.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "x", sql = "select 1" });
        var oldVersion = created.Headers.ETag!.Tag.Trim('"');
        // Someone else updates it: the ETag moves on.
        await HttpAssert.JsonAsync(await admin.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/x", new { sql = "select 'newer'" }));

        foreach (var stale in new[] { oldVersion, "bogus", "W/*" })
        {
            var put = new HttpRequestMessage(HttpMethod.Put, $"/api/workspaces/{slug}/procedures/x")
            {
                Content = JsonContent.Create(new { sql = "select 'stale'" }),
            };
            put.Headers.TryAddWithoutValidation("If-Match", stale);
            await HttpAssert.ProblemAsync(await admin.SendAsync(put), HttpStatusCode.BadRequest);
        }
        Assert.Equal("select 'newer'", await api.ScalarAsync<string>(
            "SELECT p.sql_draft FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));

        var delete = new HttpRequestMessage(HttpMethod.Delete, $"/api/workspaces/{slug}");
        delete.Headers.TryAddWithoutValidation("If-Match", "bogus");
        await HttpAssert.ProblemAsync(await admin.SendAsync(delete), HttpStatusCode.BadRequest);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"/api/workspaces/{slug}")).StatusCode);
    }

    [Fact]
    public async Task Reads_answer_304_to_a_matching_if_none_match_and_412_to_a_stale_if_match()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "pre", "Preconditions");
        var first = await admin.GetAsync($"/api/workspaces/{slug}");
        var etag = first.Headers.ETag!.ToString();

        foreach (var value in new[] { etag, "W/" + etag, $"\"0\", {etag}", "*" })
        {
            var conditional = new HttpRequestMessage(HttpMethod.Get, $"/api/workspaces/{slug}");
            conditional.Headers.TryAddWithoutValidation("If-None-Match", value);
            var notModified = await admin.SendAsync(conditional);
            Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
            Assert.Equal(etag, notModified.Headers.ETag?.ToString());
            Assert.Empty(await notModified.Content.ReadAsByteArrayAsync());
        }

        var other = new HttpRequestMessage(HttpMethod.Get, $"/api/workspaces/{slug}");
        other.Headers.TryAddWithoutValidation("If-None-Match", "\"0\"");
        Assert.Equal(HttpStatusCode.OK, (await admin.SendAsync(other)).StatusCode);

        var stale = new HttpRequestMessage(HttpMethod.Get, $"/api/workspaces/{slug}");
        stale.Headers.TryAddWithoutValidation("If-Match", "\"0\"");
        await HttpAssert.ProblemAsync(await admin.SendAsync(stale), HttpStatusCode.PreconditionFailed);

        var malformed = new HttpRequestMessage(HttpMethod.Get, $"/api/workspaces/{slug}");
        malformed.Headers.TryAddWithoutValidation("If-None-Match", "bogus");
        await HttpAssert.ValidationProblemAsync(await admin.SendAsync(malformed), "If-None-Match");
    }

    [Fact]
    public async Task Writes_without_an_etag_refuse_conditional_headers_instead_of_ignoring_them()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "pre", "Preconditions");
        var members = await api.ScalarAsync<long>(
            "SELECT count(*) FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id WHERE w.slug = @s", ("s", slug));

        var put = new HttpRequestMessage(HttpMethod.Put, $"/api/workspaces/{slug}/members/user")
        {
            Content = JsonContent.Create(new { role = "Viewer" }),
        };
        put.Headers.IfMatch.Add(new EntityTagHeaderValue("\"1\""));
        await HttpAssert.ValidationProblemAsync(await admin.SendAsync(put), "If-Match");

        var post = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures")
        {
            Content = JsonContent.Create(new { name = "p", sql = "select 1" }),
        };
        post.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Any);
        await HttpAssert.ValidationProblemAsync(await admin.SendAsync(post), "If-None-Match");

        Assert.Equal(members,
            await api.ScalarAsync<long>("SELECT count(*) FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id WHERE w.slug = @s",
            ("s", slug)));
        Assert.Equal(0L,
            await api.ScalarAsync<long>("SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s",
            ("s", slug)));
    }

    // ---- The parser alone ----

    [Theory]
    [InlineData("*", true, 0)]
    [InlineData(" * ", true, 0)]
    [InlineData("\"1\"", false, 1)]
    [InlineData("W/\"1\"", false, 1)]
    [InlineData("\"\"", false, 1)]
    [InlineData("\"1\", W/\"2\" ,\"3\"", false, 3)]
    [InlineData("\"a\", , \"b\"", false, 2)]
    [InlineData("\"caf\u00e9\"", false, 1)]
    public void Well_formed_values_parse(string value, bool any, int tags)
    {
        Assert.True(EntityTagHeader.TryParse(new StringValues(value), out var condition));
        Assert.Equal(any, condition!.IsAny);
        Assert.Equal(tags, condition.Tags.Count);
    }

    [Fact]
    public void Malformed_values_do_not_parse_and_an_absent_header_is_no_condition()
    {
        foreach (var value in MalformedValues.Append("\"a\u0001\"").Append("\"\u0100\""))
        {
            Assert.False(EntityTagHeader.TryParse(new StringValues(value), out _), value);
        }
        Assert.False(EntityTagHeader.TryParse(new StringValues(["*", "*"]), out _));
        Assert.False(EntityTagHeader.TryParse(new StringValues(string.Join(", ", Enumerable.Range(0, 65).Select(i => $"\"{i}\""))), out _));
        Assert.True(EntityTagHeader.TryParse(StringValues.Empty, out var none));
        Assert.Null(none);
    }

    [Fact]
    public void Strong_comparison_ignores_weak_tags_and_weak_comparison_ignores_weakness()
    {
        EntityTagHeader.TryParse(new StringValues("W/\"7\""), out var weak);
        EntityTagHeader.TryParse(new StringValues("\"7\""), out var strong);
        Assert.False(weak!.MatchesStrongly("\"7\""));
        Assert.True(strong!.MatchesStrongly("\"7\""));
        Assert.True(weak.MatchesWeakly("\"7\""));
        Assert.False(strong.MatchesStrongly(null));
        Assert.Null(ETags.Evaluate(new StringValues("\"7\""), StringValues.Empty, "\"7\"", "thing"));
        Assert.Equal(412, ETags.Evaluate(new StringValues("W/\"7\""), StringValues.Empty, "\"7\"", "thing")!.StatusCode);
        Assert.Equal(400, ETags.Evaluate(new StringValues("7"), StringValues.Empty, "\"7\"", "thing")!.StatusCode);
    }
}
