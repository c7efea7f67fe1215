using System.Net;
using System.Net.Http.Json;
using TcStudio.SystemDatabase.Security;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Security;

/// <summary>The API as every API fixture runs it: the app role, with short event-stream intervals.</summary>
public sealed class AppRoleApiFixture(PostgresServer server) : ApiFixture(server)
{
    public SystemRoleNames Names => RoleNames;

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [new("Events:HeartbeatInterval", "00:00:01"), new("Events:AccessCheckInterval", "00:00:01")];
}

/// <summary>
/// Workspace-scoped routes with row-level security enforced by PostgreSQL: every request's statements run with the
/// caller's user id and, once access is checked, the workspace's id (transaction-local settings).
/// </summary>
public sealed class AppRoleApiTests(AppRoleApiFixture api) : IClassFixture<AppRoleApiFixture>
{
    [Fact]
    public async Task The_API_connects_as_the_unprivileged_app_role()
    {
        using var user = await api.UserAsync();
        (await user.GetAsync("/api/me")).EnsureSuccessStatusCode();
        var sessions = await api.ColumnAsync($"""
            SELECT DISTINCT r.rolname || ' ' || r.rolsuper || ' ' || r.rolbypassrls FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
            WHERE a.datname = '{api.DatabaseName}' AND a.application_name = 'testhost'
               OR a.datname = '{api.DatabaseName}' AND r.rolname = '{api.Names.App}'
            """);
        Assert.Contains($"{api.Names.App} false false", sessions);
    }

    [Fact]
    public async Task A_user_creates_a_workspace_and_works_in_it_under_row_level_security()
    {
        using var user = await api.UserAsync();
        Assert.Equal(HttpStatusCode.Created, (await user.PostAsJsonAsync("/api/workspaces", new { name = "Sealed", slug = "sealed" })).StatusCode);

        using var bob = await api.NewUserClientAsync("bob");
        Assert.True((await user.PutAsJsonAsync("/api/workspaces/sealed/members/bob", new { role = "Member" })).IsSuccessStatusCode);
        Assert.Equal(HttpStatusCode.Created,
            (await user.PostAsJsonAsync("/api/workspaces/sealed/procedures", new { name = "get_orders", sql = "select 1" })).StatusCode);

        // Reads in the workspace (a list, a route that waits on a workspace database, the activity log) see its rows.
        Assert.Contains("get_orders", await user.GetStringAsync("/api/workspaces/sealed/procedures"));
        Assert.Equal(HttpStatusCode.OK, (await user.GetAsync("/api/workspaces/sealed/procedures/get_orders")).StatusCode);
        var members = await user.GetStringAsync("/api/workspaces/sealed/members");
        Assert.Contains("\"bob\"", members);
        Assert.Contains("workspace.created", await user.GetStringAsync("/api/workspaces/sealed/activities"));

        // Cross-workspace reads of one's own memberships: the workspace list and /me.
        Assert.Contains("\"sealed\"", await bob.GetStringAsync("/api/workspaces"));
        var me = await HttpAssert.ReadAsync<TcStudio.Api.Users.MeResponse>(await bob.GetAsync("/api/me"));
        Assert.Contains(me.Workspaces, w => w.Slug == "sealed");

        // A non-member still gets 404, and the seeded workspace's rows never show up here.
        using var carol = await api.NewUserClientAsync("carol");
        Assert.Equal(HttpStatusCode.NotFound, (await carol.GetAsync("/api/workspaces/sealed/procedures")).StatusCode);
        Assert.DoesNotContain("twsbp", await user.GetStringAsync("/api/workspaces/sealed/activities"));
    }

    [Fact]
    public async Task The_live_stream_reads_its_workspace_activities_under_row_level_security()
    {
        using var owner = await api.NewUserClientAsync("streamer");
        Assert.Equal(HttpStatusCode.Created,
            (await owner.PostAsJsonAsync("/api/workspaces", new { name = "Streamed", slug = "streamed" })).StatusCode);
        await using var stream = await EventStreamClient.OpenAsync(owner, "/api/workspaces/streamed/events");
        Assert.Equal(HttpStatusCode.OK, stream.Response.StatusCode);
        await stream.ReadyAsync();

        Assert.Equal(HttpStatusCode.Created,
            (await owner.PostAsJsonAsync("/api/workspaces/streamed/procedures", new { name = "live_report", sql = "select 1" })).StatusCode);
        var events = await stream.ActivitiesAsync(1);
        Assert.Equal("procedure.created", events[0].Activity.Action);
    }
}
