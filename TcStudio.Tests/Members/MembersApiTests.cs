using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Members;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Members;

public sealed class MembersApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private Task<int> MemberCountAsync(string slug) =>
        api.ScalarAsync<int>("SELECT member_count FROM workspaces WHERE slug = @s", ("s", slug));

    private Task<string> RoleOfAsync(string slug, string username) => api.ScalarAsync<string>(
        "SELECT m.role FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id JOIN users u ON u.id = m.user_id "
        + "WHERE w.slug = @s AND u.username = @u", ("s", slug), ("u", username));

    private Task<long> ActivitiesAsync(string slug, string action) => api.ScalarAsync<long>(
        "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = @a",
        ("s", slug), ("a", action));

    private static async Task<PagedList<MemberResponse>> MembersAsync(HttpClient client, string slug, string query) =>
        await HttpAssert.ReadAsync<PagedList<MemberResponse>>(await client.GetAsync($"/api/workspaces/{slug}/members?{query}"));

    private static Task<HttpResponseMessage> PutMemberAsync(HttpClient client, string slug, string username, string role) =>
        client.PutAsJsonAsync($"/api/workspaces/{slug}/members/{username}", new { role });

    [Fact]
    public async Task Members_list_the_workspace_with_roles_and_join_dates()
    {
        using var user = await api.UserAsync(); // a Member of twsbp
        var response = await user.GetAsync("/api/workspaces/twsbp/members");
        var list = await HttpAssert.ReadAsync<PagedList<MemberResponse>>(response);

        var admin = list.Items.Single(m => m.Username == "admin");
        Assert.Equal("Owner", admin.Role);
        Assert.Equal("Administrator", admin.DisplayName);
        Assert.True(admin.JoinedAt > DateTimeOffset.UtcNow.AddHours(-1));
        Assert.Equal("Member", list.Items.Single(m => m.Username == "user").Role);
        Assert.Equal(await MemberCountAsync("twsbp"), list.TotalCount);
        // Exactly these members, none missing (the strict read only refuses extra ones).
        Assert.Equal(["displayName", "joinedAt", "role", "username"], (await HttpAssert.JsonAsync(response))
            .GetProperty("items")[0].EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));

        var one = await HttpAssert.ReadAsync<MemberResponse>(await user.GetAsync("/api/workspaces/twsbp/members/ADMIN"));
        Assert.Equal("admin", one.Username);
    }

    [Fact]
    public async Task Outsiders_get_404_anonymous_callers_401_and_members_without_the_right_403()
    {
        using var outsider = await api.NewUserClientAsync("members-outsider");
        await HttpAssert.ProblemAsync(await outsider.GetAsync("/api/workspaces/twsbp/members"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await PutMemberAsync(outsider, "twsbp", "members-outsider", "Owner"), HttpStatusCode.NotFound);

        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.GetAsync("/api/workspaces/twsbp/members"), HttpStatusCode.Unauthorized);

        var (members, activities) = (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities"));
        using var user = await api.UserAsync(); // a Member: reads, does not manage
        await HttpAssert.ProblemAsync(await PutMemberAsync(user, "twsbp", "members-outsider", "Viewer"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await PutMemberAsync(user, "twsbp", "user", "Admin"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await user.DeleteAsync("/api/workspaces/twsbp/members/admin"), HttpStatusCode.Forbidden);
        Assert.Equal((members, activities), (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities")));
        Assert.Equal("Member", await RoleOfAsync("twsbp", "user"));
    }

    [Fact]
    public async Task Adding_is_201_changing_is_200_repeating_changes_nothing_and_removing_is_204_each_logged_once()
    {
        using var owner = await api.NewUserClientAsync("lifecycle-owner");
        var slug = (await ApiFixture.NewWorkspaceAsync(owner, "lifecycle-owner")).Slug;
        using var joiner = await api.NewUserClientAsync("lifecycle-joiner");
        await HttpAssert.ProblemAsync(await joiner.GetAsync($"/api/workspaces/{slug}"), HttpStatusCode.NotFound);

        var added = await PutMemberAsync(owner, slug, "Lifecycle-Joiner", "Viewer");
        var body = await HttpAssert.ReadAsync<MemberResponse>(added, HttpStatusCode.Created);
        Assert.Equal($"/api/workspaces/{slug}/members/lifecycle-joiner", added.Headers.Location?.ToString());
        Assert.Equal("lifecycle-joiner", body.Username);
        Assert.Equal("Viewer", body.Role);
        Assert.Equal(2, await MemberCountAsync(slug));
        Assert.Equal(HttpStatusCode.OK, (await joiner.GetAsync($"/api/workspaces/{slug}")).StatusCode);

        var same = await PutMemberAsync(owner, slug, "lifecycle-joiner", "Viewer");
        Assert.Equal(HttpStatusCode.OK, same.StatusCode);
        var changed = await HttpAssert.ReadAsync<MemberResponse>(await PutMemberAsync(owner, slug, "lifecycle-joiner", "Admin"));
        Assert.Equal("Admin", changed.Role);
        Assert.Equal(body.JoinedAt, changed.JoinedAt);
        Assert.Equal(2, await MemberCountAsync(slug));

        Assert.Equal(HttpStatusCode.NoContent, (await owner.DeleteAsync($"/api/workspaces/{slug}/members/lifecycle-joiner")).StatusCode);
        Assert.Equal(1, await MemberCountAsync(slug));
        await HttpAssert.ProblemAsync(await joiner.GetAsync($"/api/workspaces/{slug}"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await owner.DeleteAsync($"/api/workspaces/{slug}/members/lifecycle-joiner"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await owner.GetAsync($"/api/workspaces/{slug}/members/lifecycle-joiner"), HttpStatusCode.NotFound);

        Assert.Equal(1L, await ActivitiesAsync(slug, "member.added"));
        Assert.Equal(1L, await ActivitiesAsync(slug, "member.role_changed"));
        Assert.Equal(1L, await ActivitiesAsync(slug, "member.removed"));
        var roleChange = await api.ScalarAsync<string>(
            "SELECT a.details::text FROM activities a JOIN workspaces w ON w.id = a.workspace_id "
            + "WHERE w.slug = @s AND a.action = 'member.role_changed'",
            ("s", slug));
        using var details = JsonDocument.Parse(roleChange);
        Assert.Equal("Viewer", details.RootElement.GetProperty("from").GetString());
        Assert.Equal("Admin", details.RootElement.GetProperty("to").GetString());
    }

    [Fact]
    public async Task Only_owners_and_system_admins_grant_or_take_away_owner_and_workspace_admins_manage_the_rest()
    {
        using var owner = await api.NewUserClientAsync("grants-owner");
        var slug = (await ApiFixture.NewWorkspaceAsync(owner, "grants-owner")).Slug;
        using var wsAdmin = await api.NewUserClientAsync("grants-ws-admin");
        await api.NewUserClientAsync("grants-target");
        Assert.Equal(HttpStatusCode.Created, (await PutMemberAsync(owner, slug, "grants-ws-admin", "Admin")).StatusCode);

        // A workspace Admin manages non-owners ...
        Assert.Equal(HttpStatusCode.Created, (await PutMemberAsync(wsAdmin, slug, "grants-target", "Member")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await PutMemberAsync(wsAdmin, slug, "grants-target", "Viewer")).StatusCode);
        // ... but neither grants Owner, nor touches an Owner.
        var (members, activities) = (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities"));
        await HttpAssert.ProblemAsync(await PutMemberAsync(wsAdmin, slug, "grants-target", "Owner"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await PutMemberAsync(wsAdmin, slug, "grants-ws-admin", "Owner"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await PutMemberAsync(wsAdmin, slug, "grants-owner", "Viewer"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await wsAdmin.DeleteAsync($"/api/workspaces/{slug}/members/grants-owner"), HttpStatusCode.Forbidden);
        Assert.Equal((members, activities), (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities")));
        Assert.Equal("Owner", await RoleOfAsync(slug, "grants-owner"));

        // An Owner grants Owner; a system Admin who is not a member may too.
        Assert.Equal(HttpStatusCode.OK, (await PutMemberAsync(owner, slug, "grants-target", "Owner")).StatusCode);
        using var systemAdmin = await api.AdminAsync();
        Assert.Equal(HttpStatusCode.OK, (await PutMemberAsync(systemAdmin, slug, "grants-ws-admin", "Owner")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await PutMemberAsync(systemAdmin, slug, "grants-ws-admin", "Member")).StatusCode);
        Assert.Equal(0L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id JOIN users u ON u.id = m.user_id "
            + "WHERE w.slug = @s AND u.username = 'admin'",
            ("s", slug)));
    }

    [Fact]
    public async Task The_last_owner_cannot_be_demoted_or_removed_but_one_of_two_can()
    {
        using var owner = await api.NewUserClientAsync("last-owner");
        var slug = (await ApiFixture.NewWorkspaceAsync(owner, "last-owner")).Slug;
        var (members, activities) = (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities"));

        var demote = await HttpAssert.ProblemAsync(await PutMemberAsync(owner, slug, "last-owner", "Admin"), HttpStatusCode.Conflict);
        Assert.Equal("role", demote.GetProperty("field").GetString());
        await HttpAssert.ProblemAsync(await owner.DeleteAsync($"/api/workspaces/{slug}/members/last-owner"), HttpStatusCode.Conflict);
        using var systemAdmin = await api.AdminAsync();
        await HttpAssert.ProblemAsync(await systemAdmin.DeleteAsync($"/api/workspaces/{slug}/members/last-owner"), HttpStatusCode.Conflict);
        Assert.Equal((members, activities), (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities")));
        Assert.Equal("Owner", await RoleOfAsync(slug, "last-owner"));

        using var coOwner = await api.NewUserClientAsync("last-owner-co");
        Assert.Equal(HttpStatusCode.Created, (await PutMemberAsync(owner, slug, "last-owner-co", "Owner")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await coOwner.DeleteAsync($"/api/workspaces/{slug}/members/last-owner")).StatusCode);
        await HttpAssert.ProblemAsync(await PutMemberAsync(coOwner, slug, "last-owner-co", "Viewer"), HttpStatusCode.Conflict);
        Assert.Equal(1, await MemberCountAsync(slug));
    }

    [Fact]
    public async Task Two_owners_demoting_each_other_at_once_leave_exactly_one_owner()
    {
        using var first = await api.NewUserClientAsync("race-owner-a");
        var slug = (await ApiFixture.NewWorkspaceAsync(first, "race-owner-a")).Slug;
        using var second = await api.NewUserClientAsync("race-owner-b");
        Assert.Equal(HttpStatusCode.Created, (await PutMemberAsync(first, slug, "race-owner-b", "Owner")).StatusCode);

        var responses = await Task.WhenAll(
            PutMemberAsync(first, slug, "race-owner-b", "Admin"),
            PutMemberAsync(second, slug, "race-owner-a", "Admin"));

        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.OK);
        // The loser either waited for the winner's lock and found the target to be the last Owner (409), or started
        // after the winner committed and was no longer an Owner itself (403).
        Assert.Single(responses, r => r.StatusCode is HttpStatusCode.Conflict or HttpStatusCode.Forbidden);
        Assert.Equal(1L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id WHERE w.slug = @s AND m.role = 'Owner'",
            ("s", slug)));
    }

    [Fact]
    public async Task Unknown_users_are_404_problems_and_change_nothing()
    {
        using var admin = await api.AdminAsync();
        var (members, activities) = (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities"));

        var unknown = await HttpAssert.ProblemAsync(await PutMemberAsync(admin, "twsbp", "nobody-by-this-name", "Viewer"), HttpStatusCode.NotFound);
        Assert.Contains("nobody-by-this-name", unknown.GetProperty("detail").GetString());
        await HttpAssert.ProblemAsync(await admin.DeleteAsync("/api/workspaces/twsbp/members/nobody-by-this-name"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await admin.GetAsync("/api/workspaces/twsbp/members/nobody-by-this-name"), HttpStatusCode.NotFound);

        // A deleted user is unknown too.
        await api.NewUserClientAsync("members-deleted");
        await api.ExecuteAsync("UPDATE users SET deleted_at = now() WHERE username = 'members-deleted'");
        await HttpAssert.ProblemAsync(await PutMemberAsync(admin, "twsbp", "members-deleted", "Viewer"), HttpStatusCode.NotFound);

        Assert.Equal((members, activities), (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities")));
    }

    public static TheoryData<string, string, string> BadRequests => new()
    {
        { "user", """{"role":"Boss"}""", "role" },
        { "user", """{"role":"owner"}""", "role" },
        { "user", """{"role":3}""", "role" },
        { "user", """{"role":null}""", "role" },
        { "user", """{}""", "$" },
        { "user", """{"role":"Viewer","expires":"tomorrow"}""", "expires" },
        { "user", """{"role":"Vie\u0000wer"}""", "role" },
        { "no", """{"role":"Viewer"}""", "username" },
        { "bad%20name", """{"role":"Viewer"}""", "username" },
        { "%C3%BCber", """{"role":"Viewer"}""", "username" }, // NUL in a path never gets this far: the server refuses the request line
        { new string('u', 65), """{"role":"Viewer"}""", "username" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_input_is_a_problem_naming_the_field_and_writes_nothing(string username, string body, string field)
    {
        using var admin = await api.AdminAsync();
        var (members, activities) = (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities"));
        var role = await RoleOfAsync("twsbp", "user");

        await HttpAssert.ValidationProblemAsync(await admin.PutAsync($"/api/workspaces/twsbp/members/{username}",
            RawJson.Content(body)), field);

        Assert.Equal((members, activities), (await api.RowsAsync("workspace_members"), await api.RowsAsync("activities")));
        Assert.Equal(role, await RoleOfAsync("twsbp", "user"));
    }

    [Fact]
    public async Task Invalid_usernames_in_reads_and_removals_are_400()
    {
        using var admin = await api.AdminAsync();
        await HttpAssert.ValidationProblemAsync(await admin.GetAsync("/api/workspaces/twsbp/members/x%2Fy"), "username");
        await HttpAssert.ValidationProblemAsync(await admin.DeleteAsync("/api/workspaces/twsbp/members/a%20b"), "username");
    }

    [Theory]
    [InlineData("pageSize=0", "pageSize")]
    [InlineData("pageSize=201", "pageSize")]
    [InlineData("page=0", "page")]
    [InlineData("page=x", "page")]
    public async Task Member_page_parameters_out_of_range_are_400(string query, string field)
    {
        using var user = await api.UserAsync();
        await HttpAssert.ValidationProblemAsync(await user.GetAsync($"/api/workspaces/twsbp/members?{query}"), field);
    }

    [Fact]
    public async Task Pages_split_the_members_and_the_query_count_does_not_grow_with_the_page()
    {
        using var owner = await api.NewUserClientAsync("paged-owner");
        var slug = (await ApiFixture.NewWorkspaceAsync(owner, "paged-owner")).Slug;
        for (var i = 0; i < 5; i++)
        {
            await api.NewUserClientAsync($"paged-member-{i}");
            Assert.Equal(HttpStatusCode.Created, (await PutMemberAsync(owner, slug, $"paged-member-{i}", "Viewer")).StatusCode);
        }

        var first = await MembersAsync(owner, slug, "page=1&pageSize=4");
        var second = await MembersAsync(owner, slug, "page=2&pageSize=4");
        var beyond = await MembersAsync(owner, slug, "page=3&pageSize=4");
        Assert.Equal(["paged-member-0", "paged-member-1", "paged-member-2", "paged-member-3"], first.Items.Select(m => m.Username));
        Assert.Equal(["paged-member-4", "paged-owner"], second.Items.Select(m => m.Username));
        Assert.Empty(beyond.Items);
        Assert.All([first, second, beyond], p => Assert.Equal(6, p.TotalCount));

        using var counter = new DatabaseCommandCounter(api.DatabaseName, requestsOnly: true);
        await MembersAsync(owner, slug, "pageSize=1");
        var small = counter.Commands.Count;
        counter.Reset();
        await MembersAsync(owner, slug, "pageSize=200");
        Assert.Equal(small, counter.Commands.Count);
        Assert.InRange(small, 1, 3);
    }
}
