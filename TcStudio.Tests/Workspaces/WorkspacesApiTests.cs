using System.Net;
using System.Net.Http.Json;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Workspaces;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Workspaces;

public sealed class WorkspacesApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private Task<long> WorkspaceRowsAsync() => api.RowsAsync("workspaces");

    private static async Task<PagedList<WorkspaceSummary>> ListAsync(HttpClient client, string query = "") =>
        await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(await client.GetAsync($"/api/workspaces{query}"));

    [Fact]
    public async Task Members_see_their_workspaces_and_the_system_admin_sees_all()
    {
        using var admin = await api.AdminAsync();
        using var outsider = await api.NewUserClientAsync("outsider-list");
        var slug = ApiFixture.NewSlug("admins-only");
        Assert.Equal(HttpStatusCode.Created, (await admin.PostAsJsonAsync("/api/workspaces", new { name = "Admins only", slug })).StatusCode);

        using var user = await api.UserAsync();
        var userList = await ListAsync(user, "?pageSize=200");
        var twsbp = Assert.Single(userList.Items, w => w.Slug == "twsbp");
        Assert.DoesNotContain(userList.Items, w => w.Slug == slug);
        Assert.Equal("Member", twsbp.Role);
        Assert.Equal(2, twsbp.MemberCount);

        var adminSlugs = (await ListAsync(admin, "?pageSize=200")).Items.Select(w => w.Slug).ToList();
        Assert.Contains("twsbp", adminSlugs);
        Assert.Contains(slug, adminSlugs);

        Assert.Equal(0, (await ListAsync(outsider)).TotalCount);
    }

    [Fact]
    public async Task Creating_a_workspace_makes_the_caller_its_owner_and_logs_it()
    {
        using var user = await api.UserAsync();
        var slug = ApiFixture.NewSlug("mine");
        var response = await user.PostAsJsonAsync("/api/workspaces", new { name = "  Mine  ", slug, description = "Things" });

        var created = await HttpAssert.ReadAsync<WorkspaceDetails>(response, HttpStatusCode.Created);
        Assert.Equal($"/api/workspaces/{slug}", response.Headers.Location?.ToString());
        Assert.NotNull(response.Headers.ETag);
        Assert.Equal("Mine", created.Name);
        Assert.Equal("Owner", created.Role);
        Assert.Equal(1, created.MemberCount);

        var fetched = await user.GetAsync($"/api/workspaces/{slug}");
        Assert.Equal(response.Headers.ETag, fetched.Headers.ETag);
        Assert.Equal(1L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = 'workspace.created'",
            ("s", slug)));
    }

    [Fact]
    public async Task A_taken_slug_is_a_409_naming_the_field_and_concurrent_creates_give_exactly_one_201()
    {
        using var user = await api.UserAsync();
        var taken = await HttpAssert.ProblemAsync(
            await user.PostAsJsonAsync("/api/workspaces", new { name = "Again", slug = "twsbp" }), HttpStatusCode.Conflict);
        Assert.Equal("slug", taken.GetProperty("field").GetString());

        var slug = ApiFixture.NewSlug("race");
        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            using var client = await api.UserAsync();
            return await client.PostAsJsonAsync("/api/workspaces", new { name = $"Race {i}", slug });
        }));
        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.Created);
        Assert.All(responses.Where(r => r.StatusCode != HttpStatusCode.Created),
            r => Assert.Equal(HttpStatusCode.Conflict, r.StatusCode));
        Assert.Equal(1L, await api.ScalarAsync<long>("SELECT count(*) FROM workspaces WHERE slug = @s", ("s", slug)));
    }

    public static TheoryData<string, string, HttpStatusCode> BadBodies => new()
    {
        { """{"name":"X","slug":"ok-slug","colour":"red"}""", "colour", HttpStatusCode.BadRequest },
        { """{"name":42,"slug":"ok-slug"}""", "name", HttpStatusCode.BadRequest },
        { """{"slug":"ok-slug"}""", "$", HttpStatusCode.BadRequest },
        { """{"name":null,"slug":"ok-slug"}""", "name", HttpStatusCode.BadRequest },
        { """{"name":"X","slug":"Not A Slug"}""", "slug", HttpStatusCode.BadRequest },
        { """{"name":"X","slug":"-x"}""", "slug", HttpStatusCode.BadRequest },
        { """{"name":"X\u0000Y","slug":"ok-slug"}""", "name", HttpStatusCode.BadRequest },
        { $$"""{"name":"{{new string('n', 201)}}","slug":"ok-slug"}""", "name", HttpStatusCode.BadRequest },
        { """{"name":"   ","slug":"ok-slug"}""", "name", HttpStatusCode.BadRequest },
        { """{"name":"X","slug":"ok-slug",""", "$", HttpStatusCode.BadRequest },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Bad_input_is_a_problem_naming_the_field_and_writes_nothing(string body, string field, HttpStatusCode status)
    {
        using var user = await api.UserAsync();
        var before = await WorkspaceRowsAsync();

        var response = await user.PostAsync("/api/workspaces", RawJson.Content(body));

        var problem = await HttpAssert.ProblemAsync(response, status);
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), problem.ToString());
        Assert.Equal(before, await WorkspaceRowsAsync());
    }

    [Fact]
    public async Task A_body_over_one_mebibyte_is_413_and_a_non_json_body_is_415()
    {
        using var user = await api.UserAsync();
        var huge = $$"""{"name":"{{new string('n', 1024 * 1024)}}","slug":"too-big"}""";
        await HttpAssert.ProblemAsync(
            await user.PostAsync("/api/workspaces", RawJson.Content(huge)),
            HttpStatusCode.RequestEntityTooLarge);

        await HttpAssert.ProblemAsync(
            await user.PostAsync("/api/workspaces", RawJson.Content("name=x", "text/plain")),
            HttpStatusCode.UnsupportedMediaType);
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspaces WHERE slug = 'too-big'"));
    }

    [Theory]
    [InlineData("pageSize=0", "pageSize")]
    [InlineData("pageSize=201", "pageSize")]
    [InlineData("page=0", "page")]
    [InlineData("page=abc", "page")]
    public async Task Page_parameters_out_of_range_are_400(string query, string field)
    {
        using var user = await api.UserAsync();
        var response = await user.GetAsync($"/api/workspaces?{query}");
        var problem = await HttpAssert.ProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Contains(field, problem.ToString());
    }

    [Fact]
    public async Task Pages_split_the_list_and_a_page_past_the_end_is_empty()
    {
        using var paged = await api.NewUserClientAsync("pager");
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.Created,
                (await paged.PostAsJsonAsync("/api/workspaces", new { name = $"P{i}", slug = $"pager-{i}" })).StatusCode);
        }

        var first = await ListAsync(paged, "?page=1&pageSize=2");
        var third = await ListAsync(paged, "?page=3&pageSize=2");
        var beyond = await ListAsync(paged, "?page=9&pageSize=2");

        Assert.Equal(["pager-0", "pager-1"], first.Items.Select(w => w.Slug));
        Assert.Equal(["pager-4"], third.Items.Select(w => w.Slug));
        Assert.Empty(beyond.Items);
        Assert.All([first, third, beyond], p => Assert.Equal(5, p.TotalCount));
        Assert.Equal(2, first.PageSize);
        Assert.Equal(3, third.Page);
    }

    [Fact]
    public async Task A_non_member_gets_404_and_a_viewer_cannot_change_anything()
    {
        using var outsider = await api.NewUserClientAsync("outsider-404");
        await HttpAssert.ProblemAsync(await outsider.GetAsync("/api/workspaces/twsbp"), HttpStatusCode.NotFound);
        var unknown = await HttpAssert.ProblemAsync(await outsider.GetAsync("/api/workspaces/no-such-workspace"), HttpStatusCode.NotFound);
        var hidden = await HttpAssert.ProblemAsync(await outsider.GetAsync("/api/workspaces/twsbp"), HttpStatusCode.NotFound);
        Assert.Equal(unknown.GetProperty("title").GetString(), hidden.GetProperty("title").GetString());

        using var user = await api.UserAsync(); // a Member of twsbp
        await HttpAssert.ProblemAsync(
            await user.PatchAsJsonAsync("/api/workspaces/twsbp", new { name = "Renamed by a member" }), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await user.DeleteAsync("/api/workspaces/twsbp"), HttpStatusCode.Forbidden);
        Assert.Equal("TWSBP", await api.ScalarAsync<string>("SELECT name FROM workspaces WHERE slug = 'twsbp'"));
    }

    [Fact]
    public async Task Patch_with_a_stale_etag_is_412_and_changes_nothing()
    {
        using var owner = await api.NewUserClientAsync("etag-owner");
        var slug = ApiFixture.NewSlug("etag");
        var created = await owner.PostAsJsonAsync("/api/workspaces", new { name = "Original", slug });
        var etag = created.Headers.ETag!;

        var first = new HttpRequestMessage(HttpMethod.Patch, $"/api/workspaces/{slug}") { Content = JsonContent.Create(new { name = "First edit" }) };
        first.Headers.IfMatch.Add(etag);
        var firstResponse = await owner.SendAsync(first);
        Assert.Equal(HttpStatusCode.OK, firstResponse.StatusCode);
        Assert.NotEqual(etag, firstResponse.Headers.ETag);

        var stale = new HttpRequestMessage(HttpMethod.Patch, $"/api/workspaces/{slug}")
        {
            Content = JsonContent.Create(new { name = "Second edit" }),
        };
        stale.Headers.IfMatch.Add(etag);
        await HttpAssert.ProblemAsync(await owner.SendAsync(stale), HttpStatusCode.PreconditionFailed);
        Assert.Equal("First edit", await api.ScalarAsync<string>("SELECT name FROM workspaces WHERE slug = @s", ("s", slug)));

        var settings = await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { settings = new { theme = "dark" } });
        var body = await HttpAssert.ReadAsync<WorkspaceDetails>(settings);
        Assert.Equal("dark", body.Settings.GetProperty("theme").GetString());
        await HttpAssert.ValidationProblemAsync(await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { settings = 5 }), "settings");
    }

    [Fact]
    public async Task Soft_delete_hides_the_workspace_keeps_its_slug_and_purge_removes_everything()
    {
        using var owner = await api.NewUserClientAsync("deleting-owner");
        var slug = ApiFixture.NewSlug("gone");
        await owner.PostAsJsonAsync("/api/workspaces", new { name = "Gone", slug });

        Assert.Equal(HttpStatusCode.NoContent, (await owner.DeleteAsync($"/api/workspaces/{slug}")).StatusCode);
        await HttpAssert.ProblemAsync(await owner.GetAsync($"/api/workspaces/{slug}"), HttpStatusCode.NotFound);
        var reuse = await HttpAssert.ProblemAsync(
            await owner.PostAsJsonAsync("/api/workspaces", new { name = "Gone again", slug }), HttpStatusCode.Conflict);
        Assert.Equal("slug", reuse.GetProperty("field").GetString());

        // Only a system Admin purges, even an already soft-deleted workspace.
        await HttpAssert.ProblemAsync(await owner.DeleteAsync($"/api/workspaces/{slug}?purge=true"), HttpStatusCode.NotFound);
        using var admin = await api.AdminAsync();
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}?purge=true")).StatusCode);
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM workspaces WHERE slug = @s", ("s", slug)));
        Assert.Equal(1L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM activities WHERE action = 'workspace.purged' AND details->>'slug' = @s", ("s", slug)));
    }

    [Fact]
    public async Task Listing_issues_the_same_number_of_commands_whatever_the_page_size()
    {
        using var admin = await api.AdminAsync();
        for (var i = 0; i < 6; i++) await admin.PostAsJsonAsync("/api/workspaces", new { name = $"N{i}", slug = ApiFixture.NewSlug("nplus") });
        await admin.GetAsync("/api/workspaces"); // warm up: session cache, prepared plans

        using var counter = new DatabaseCommandCounter(api.DatabaseName, requestsOnly: true);
        await ListAsync(admin, "?pageSize=1");
        var small = counter.Commands.Count;
        counter.Reset();
        await ListAsync(admin, "?pageSize=200");
        var large = counter.Commands.Count;

        Assert.Equal(small, large);
        Assert.InRange(large, 1, 3);
    }
}
