using System.Net;
using System.Net.Http.Json;
using System.Text;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Workspaces;

public sealed class WorkspacesApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private static string NewSlug(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..20];

    private Task<long> WorkspaceRowsAsync() => api.ScalarAsync<long>("SELECT count(*) FROM workspaces");

    [Fact]
    public async Task Members_see_their_workspaces_and_the_system_admin_sees_all()
    {
        using var admin = await api.AdminAsync();
        using var outsider = await api.NewUserClientAsync("outsider-list");
        var slug = NewSlug("admins-only");
        Assert.Equal(HttpStatusCode.Created, (await admin.PostAsJsonAsync("/api/workspaces", new { name = "Admins only", slug })).StatusCode);

        using var user = await api.UserAsync();
        var userList = await HttpAssert.JsonAsync(await user.GetAsync("/api/workspaces?pageSize=200"));
        var twsbp = Assert.Single(userList.GetProperty("items").EnumerateArray(), w => w.GetProperty("slug").GetString() == "twsbp");
        Assert.DoesNotContain(userList.GetProperty("items").EnumerateArray(), w => w.GetProperty("slug").GetString() == slug);
        Assert.Equal("Member", twsbp.GetProperty("role").GetString());
        Assert.Equal(2, twsbp.GetProperty("memberCount").GetInt32());

        var adminList = await HttpAssert.JsonAsync(await admin.GetAsync("/api/workspaces?pageSize=200"));
        var adminSlugs = adminList.GetProperty("items").EnumerateArray().Select(w => w.GetProperty("slug").GetString()).ToList();
        Assert.Contains("twsbp", adminSlugs);
        Assert.Contains(slug, adminSlugs);

        var outsiderList = await HttpAssert.JsonAsync(await outsider.GetAsync("/api/workspaces"));
        Assert.Equal(0, outsiderList.GetProperty("totalCount").GetInt32());
    }

    [Fact]
    public async Task Creating_a_workspace_makes_the_caller_its_owner_and_logs_it()
    {
        using var user = await api.UserAsync();
        var slug = NewSlug("mine");
        var response = await user.PostAsJsonAsync("/api/workspaces", new { name = "  Mine  ", slug, description = "Things" });

        var created = await HttpAssert.JsonAsync(response, HttpStatusCode.Created);
        Assert.Equal($"/api/workspaces/{slug}", response.Headers.Location?.ToString());
        Assert.NotNull(response.Headers.ETag);
        Assert.Equal("Mine", created.GetProperty("name").GetString());
        Assert.Equal("Owner", created.GetProperty("role").GetString());
        Assert.Equal(1, created.GetProperty("memberCount").GetInt32());

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

        var slug = NewSlug("race");
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

        var response = await user.PostAsync("/api/workspaces", new StringContent(body, Encoding.UTF8, "application/json"));

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
            await user.PostAsync("/api/workspaces", new StringContent(huge, Encoding.UTF8, "application/json")),
            HttpStatusCode.RequestEntityTooLarge);

        await HttpAssert.ProblemAsync(
            await user.PostAsync("/api/workspaces", new StringContent("name=x", Encoding.UTF8, "text/plain")),
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
            Assert.Equal(HttpStatusCode.Created, (await paged.PostAsJsonAsync("/api/workspaces", new { name = $"P{i}", slug = $"pager-{i}" })).StatusCode);
        }

        var first = await HttpAssert.JsonAsync(await paged.GetAsync("/api/workspaces?page=1&pageSize=2"));
        var third = await HttpAssert.JsonAsync(await paged.GetAsync("/api/workspaces?page=3&pageSize=2"));
        var beyond = await HttpAssert.JsonAsync(await paged.GetAsync("/api/workspaces?page=9&pageSize=2"));

        Assert.Equal(["pager-0", "pager-1"], first.GetProperty("items").EnumerateArray().Select(w => w.GetProperty("slug").GetString()));
        Assert.Equal(["pager-4"], third.GetProperty("items").EnumerateArray().Select(w => w.GetProperty("slug").GetString()));
        Assert.Equal(0, beyond.GetProperty("items").GetArrayLength());
        Assert.All([first, third, beyond], p => Assert.Equal(5, p.GetProperty("totalCount").GetInt32()));
        Assert.Equal(2, first.GetProperty("pageSize").GetInt32());
        Assert.Equal(3, third.GetProperty("page").GetInt32());
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
        var slug = NewSlug("etag");
        var created = await owner.PostAsJsonAsync("/api/workspaces", new { name = "Original", slug });
        var etag = created.Headers.ETag!;

        var first = new HttpRequestMessage(HttpMethod.Patch, $"/api/workspaces/{slug}") { Content = JsonContent.Create(new { name = "First edit" }) };
        first.Headers.IfMatch.Add(etag);
        var firstResponse = await owner.SendAsync(first);
        Assert.Equal(HttpStatusCode.OK, firstResponse.StatusCode);
        Assert.NotEqual(etag, firstResponse.Headers.ETag);

        var stale = new HttpRequestMessage(HttpMethod.Patch, $"/api/workspaces/{slug}") { Content = JsonContent.Create(new { name = "Second edit" }) };
        stale.Headers.IfMatch.Add(etag);
        await HttpAssert.ProblemAsync(await owner.SendAsync(stale), HttpStatusCode.PreconditionFailed);
        Assert.Equal("First edit", await api.ScalarAsync<string>("SELECT name FROM workspaces WHERE slug = @s", ("s", slug)));

        var settings = await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { settings = new { theme = "dark" } });
        var body = await HttpAssert.JsonAsync(settings);
        Assert.Equal("dark", body.GetProperty("settings").GetProperty("theme").GetString());
        await HttpAssert.ValidationProblemAsync(await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { settings = 5 }), "settings");
    }

    [Fact]
    public async Task Soft_delete_hides_the_workspace_keeps_its_slug_and_purge_removes_everything()
    {
        using var owner = await api.NewUserClientAsync("deleting-owner");
        var slug = NewSlug("gone");
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
        for (var i = 0; i < 6; i++) await admin.PostAsJsonAsync("/api/workspaces", new { name = $"N{i}", slug = NewSlug("nplus") });
        await admin.GetAsync("/api/workspaces"); // warm up: session cache, prepared plans

        using var counter = new DatabaseCommandCounter(api.DatabaseName);
        await HttpAssert.JsonAsync(await admin.GetAsync("/api/workspaces?pageSize=1"));
        var small = counter.Commands.Count;
        counter.Reset();
        await HttpAssert.JsonAsync(await admin.GetAsync("/api/workspaces?pageSize=200"));
        var large = counter.Commands.Count;

        Assert.Equal(small, large);
        Assert.InRange(large, 1, 3);
    }
}
