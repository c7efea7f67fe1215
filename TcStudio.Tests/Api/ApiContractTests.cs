using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Users;
using TcStudio.Api.Workspaces;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// What a REST consumer relies on across routes: one of two list shapes with a <c>next</c> link, list items with their
/// ETag, 304 for an unchanged single resource, and a stable <c>code</c> on every problem (all listed in docs/api.md).
/// </summary>
public sealed class ApiContractTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private static async Task<PagedList<WorkspaceSummary>> WorkspacesAsync(HttpClient client, string url) =>
        await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(await client.GetAsync(url));

    [Fact]
    public async Task An_offset_list_links_its_next_page_keeping_the_query_and_the_last_page_has_no_next()
    {
        using var admin = await api.AdminAsync();
        for (var i = 0; i < 3; i++)
        {
            await ApiFixture.NewWorkspaceAsync(admin, "paged", "Paged");
        }
        var first = await WorkspacesAsync(admin, "/api/workspaces?pageSize=2");
        var total = first.TotalCount;
        Assert.True(total >= 4, $"{total} workspaces"); // the seeded workspace and these three
        Assert.Equal("http://localhost/api/workspaces?pageSize=2&page=2", first.Next);

        var seen = first.Items.Select(w => w.Slug).ToList();
        var page = first;
        while (page.Next is { } url)
        {
            page = await WorkspacesAsync(admin, url);
            seen.AddRange(page.Items.Select(w => w.Slug));
        }
        Assert.Equal(total, seen.Count);
        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.Equal((total + 1) / 2, page.Page);
    }

    [Fact]
    public async Task Every_collection_answers_one_of_the_two_list_shapes()
    {
        using var admin = await api.AdminAsync();
        var offsetLists = new[]
        {
            "/api/roles", "/api/workspace-servers", "/api/users", "/api/workspaces", "/api/workspaces/twsbp/members",
            "/api/workspaces/twsbp/environments", "/api/workspaces/twsbp/procedures",
        };
        foreach (var route in offsetLists)
        {
            var list = await HttpAssert.JsonAsync(await admin.GetAsync(route));
            Assert.True(list.ValueKind == JsonValueKind.Object, $"{route}: {list}");
            var names = list.EnumerateObject().Select(p => p.Name).Order().ToList();
            Assert.True(names.SequenceEqual(["items", "page", "pageSize", "totalCount"])
                || names.SequenceEqual(["items", "next", "page", "pageSize", "totalCount"]),
                $"{route}: {string.Join(", ", names)}");
            Assert.Equal(JsonValueKind.Array, list.GetProperty("items").ValueKind);
        }
        var environments = await HttpAssert.JsonAsync(await admin.GetAsync("/api/workspaces/twsbp/environments?page=1&pageSize=200"));
        Assert.Equal(environments.GetProperty("totalCount").GetInt32(), environments.GetProperty("items").GetArrayLength());
        await HttpAssert.ValidationProblemAsync(await admin.GetAsync("/api/workspaces/twsbp/environments?pageSize=0"), "pageSize");

        var activities = await HttpAssert.JsonAsync(await admin.GetAsync("/api/workspaces/twsbp/activities?limit=200"));
        Assert.All(activities.EnumerateObject(), p => Assert.Contains(p.Name, new[] { "items", "nextCursor", "next" }));
    }

    [Fact]
    public async Task List_items_carry_the_etag_of_the_resource_and_an_unchanged_resource_answers_304()
    {
        using var admin = await api.AdminAsync();
        var users = await HttpAssert.ReadAsync<PagedList<UserResponse>>(await admin.GetAsync("/api/users"));
        var listed = users.Items.First(u => u.Username == "user");
        var id = listed.Id;
        var single = await admin.GetAsync($"/api/users/{id}");
        Assert.Equal(HttpStatusCode.OK, single.StatusCode);
        var etag = single.Headers.ETag!.ToString();
        Assert.Equal(etag, listed.ETag);

        using var conditional = new HttpRequestMessage(HttpMethod.Get, $"/api/users/{id}");
        conditional.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Parse(listed.ETag!));
        var notModified = await admin.SendAsync(conditional);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
        Assert.Equal(etag, notModified.Headers.ETag!.ToString());
        Assert.Equal("", await notModified.Content.ReadAsStringAsync());

        // Once it changed, the old ETag no longer matches: the new representation comes back.
        await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}",
            new { displayName = "Changed " + Guid.NewGuid().ToString("N")[..6] }));
        using var again = new HttpRequestMessage(HttpMethod.Get, $"/api/users/{id}");
        again.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Parse(etag));
        var changed = await admin.SendAsync(again);
        Assert.Equal(HttpStatusCode.OK, changed.StatusCode);
        Assert.NotEqual(etag, changed.Headers.ETag!.ToString());

        var twsbp = (await WorkspacesAsync(admin, "/api/workspaces?pageSize=200")).Items.First(w => w.Slug == "twsbp");
        var workspace = await admin.GetAsync("/api/workspaces/twsbp");
        Assert.Equal(workspace.Headers.ETag!.ToString(), twsbp.ETag);
    }

    [Fact]
    public async Task Problems_carry_the_stable_code_of_their_situation()
    {
        using var admin = await api.AdminAsync();
        using var anonymous = api.CreateAnonymousClient();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "codes", "Codes");

        await AssertCode(admin.PostAsJsonAsync("/api/workspaces", new { name = "Again", slug }), HttpStatusCode.Conflict, "workspace.slug_taken");
        await AssertCode(anonymous.PostAsJsonAsync("/api/auth/token", new { username = "admin", password = "wrong-password" }),
            HttpStatusCode.Unauthorized, "auth.invalid_credentials");
        await AssertCode(anonymous.GetAsync("/api/me"), HttpStatusCode.Unauthorized, "auth.unauthenticated");
        await AssertCode(admin.GetAsync("/api/workspaces/no-such-workspace"), HttpStatusCode.NotFound, "resource.not_found");
        await AssertCode(admin.GetAsync("/api/users?pageSize=0"), HttpStatusCode.BadRequest, "request.invalid");
        await AssertCode(admin.PostAsync("/api/workspaces", RawJson.Content("{\"name\":")),
            HttpStatusCode.BadRequest, "request.malformed_json");
        await AssertCode(admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "dev", server = "nowhere", databaseName = "x_dev" }),
            HttpStatusCode.BadRequest, "request.invalid");
        await AssertCode(admin.PostAsync($"/api/workspaces/{slug}/procedures/nothing/execute?env=dev", JsonContent.Create(new { })),
            HttpStatusCode.NotFound, "resource.not_found");
    }

    [Fact]
    public void Every_error_code_is_listed_in_docs_api_md()
    {
        var docs = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "docs", "api.md"));
        var missing = ErrorCodes.All.Where(code => !docs.Contains($"`{code}`", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, "codes missing from docs/api.md, \"Error codes\": " + string.Join(", ", missing));
        Assert.Equal(ErrorCodes.All.Count, ErrorCodes.All.Distinct().Count());
        Assert.All(ErrorCodes.All, code => Assert.Matches("^[a-z]+\\.[a-z_]+$", code));
    }

    private static async Task AssertCode(Task<HttpResponseMessage> sent, HttpStatusCode status, string code)
    {
        var problem = await HttpAssert.ProblemAsync(await sent, status);
        Assert.Equal(code, problem.GetProperty("code").GetString());
    }
}
