using System.Net;
using System.Net.Http.Json;
using TcStudio.Api.Activities;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Security;

/// <summary>The API over ONE pooled connection: every request of every user takes the same physical session.</summary>
public sealed class OneConnectionApiFixture(PostgresServer server) : ApiFixture(server)
{
    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Database:MinPoolSize", "1"),
        new("Database:MaxPoolSize", "1"),
    ];
}

/// <summary>
/// Attack: the row-level-security settings (tcstudio.user_id, tcstudio.workspace_id) travel with a request's
/// statements on a pooled connection that the next request reuses — the hot reads even keep one connection for the
/// whole request. If a setting outlived its request (a session-level SET, a batch without its transaction, a request
/// that failed half-way), the next caller on that connection would read as the previous one. Two owners take turns on a
/// single connection, with failing requests in between: each sees exactly their own workspace's rows, every time.
/// </summary>
public sealed class PooledConnectionIsolationTests(OneConnectionApiFixture api) : IClassFixture<OneConnectionApiFixture>
{
    [Fact]
    public async Task Requests_taking_turns_on_one_connection_never_read_with_the_previous_callers_settings()
    {
        var alice = await api.NewUserClientAsync("alice-" + Guid.NewGuid().ToString("N")[..8]);
        var bob = await api.NewUserClientAsync("bob-" + Guid.NewGuid().ToString("N")[..8]);
        var aliceSlug = await NewWorkspaceWithDraftsAsync(alice, "alice", "alice_report", "alice_export");
        var bobSlug = await NewWorkspaceWithDraftsAsync(bob, "bob", "bob_report");

        for (var round = 0; round < 15; round++)
        {
            await AssertSeesOnlyAsync(alice, aliceSlug, ["alice_export", "alice_report"]);
            // A request that fails after entering the workspace (a cursor this API never wrote) leaves nothing behind.
            Assert.Equal(HttpStatusCode.BadRequest, (await alice.GetAsync($"/api/workspaces/{aliceSlug}/activities?cursor=AAAA")).StatusCode);
            await AssertSeesOnlyAsync(bob, bobSlug, ["bob_report"]);
            // The other's workspace stays invisible whoever used the connection last.
            Assert.Equal(HttpStatusCode.NotFound, (await bob.GetAsync($"/api/workspaces/{aliceSlug}/procedures")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await alice.GetAsync($"/api/workspaces/{bobSlug}")).StatusCode);
            // A search that matches the other's names finds nothing of theirs.
            var search = await bob.GetFromJsonAsync<PagedList<ProcedureSummary>>($"/api/workspaces/{bobSlug}/procedures?search=alice");
            Assert.Empty(search!.Items);
        }
    }

    private static async Task<string> NewWorkspaceWithDraftsAsync(HttpClient owner, string prefix, params string[] drafts)
    {
        var slug = ApiFixture.NewSlug(prefix);
        Assert.Equal(HttpStatusCode.Created, (await owner.PostAsJsonAsync("/api/workspaces", new { name = prefix, slug })).StatusCode);
        foreach (var name in drafts)
        {
            var created = await owner.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
                new { name, sql = $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;" });
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        }
        return slug;
    }

    private static async Task AssertSeesOnlyAsync(HttpClient owner, string slug, string[] procedures)
    {
        var page = await owner.GetFromJsonAsync<PagedList<ProcedureSummary>>($"/api/workspaces/{slug}/procedures?pageSize=50");
        Assert.Equal(procedures, page!.Items.Select(p => p.Name).Order());
        Assert.Equal(procedures.Length, page.TotalCount);

        var activities = await owner.GetFromJsonAsync<CursorList<ActivityResponse>>($"/api/workspaces/{slug}/activities");
        // The workspace's own history: its creation and one entry per draft, none of the other workspace's.
        Assert.Contains(activities!.Items, a => a.Action == "workspace.created");
        Assert.Equal(procedures.Length, activities.Items.Count(a => a.Action == "procedure.created"));
    }
}
