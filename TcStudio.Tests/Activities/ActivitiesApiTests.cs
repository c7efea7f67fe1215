using System.Buffers.Text;
using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using TcStudio.Api.Activities;
using TcStudio.Api.Infrastructure;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Activities;

public sealed class ActivitiesApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private static async Task<CursorList<ActivityResponse>> PageAsync(HttpClient client, string url) =>
        await HttpAssert.ReadAsync<CursorList<ActivityResponse>>(await client.GetAsync(url));

    /// <summary>Every page from the first to the last, following the next links (absent, with nextCursor, on the last page).</summary>
    private static async Task<List<ActivityResponse>> WalkAsync(HttpClient client, string slug, int limit)
    {
        var items = new List<ActivityResponse>();
        var url = $"/api/workspaces/{slug}/activities?limit={limit}";
        for (var pages = 0; ; pages++)
        {
            Assert.True(pages < 1000, "the cursor never ran out");
            var page = await PageAsync(client, url);
            Assert.InRange(page.Items.Count, 0, limit);
            items.AddRange(page.Items);
            if (page.Next is null)
            {
                Assert.Null(page.NextCursor);
                return items;
            }
            Assert.Equal(limit, page.Items.Count); // only the last page may be short
            url = page.Next;
            // An absolute URL that keeps the caller's limit and carries the cursor.
            Assert.StartsWith("http://localhost/api/workspaces/", url);
            Assert.Contains($"limit={limit}", url);
            Assert.Contains("cursor=" + Uri.EscapeDataString(page.NextCursor!), url);
        }
    }

    [Fact]
    public async Task The_log_shows_what_happened_newest_first_with_who_did_it()
    {
        using var owner = await api.NewUserClientAsync("log-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "log-owner");
        await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { name = "Renamed" });
        await api.ExecuteAsync($"""
            INSERT INTO activities (id, workspace_id, user_id, action, entity_type, created_at)
            VALUES (gen_random_uuid(), '{workspaceId}', NULL, 'system.checked', 'system', now() + interval '1 minute')
            """);

        var response = await owner.GetAsync($"/api/workspaces/{slug}/activities");
        var page = await HttpAssert.ReadAsync<CursorList<ActivityResponse>>(response);
        var items = page.Items;

        Assert.Equal(["system.checked", "workspace.updated", "workspace.created"], items.Select(i => i.Action));
        Assert.Null(items[0].Username);
        Assert.Equal("log-owner", items[1].Username);
        Assert.Equal("workspace", items[2].EntityType);
        Assert.Equal(workspaceId, items[2].EntityId);
        Assert.Equal(slug, items[2].Details!.Value.GetProperty("slug").GetString());
        Assert.True(items[1].CreatedAt >= items[2].CreatedAt);
        // The wire shape itself: on the last page nextCursor and next are absent (not null), and an item has exactly
        // these members, each written even when null.
        var raw = await HttpAssert.JsonAsync(response);
        Assert.False(raw.TryGetProperty("nextCursor", out _));
        Assert.False(raw.TryGetProperty("next", out _));
        Assert.Equal(["action", "createdAt", "details", "entityId", "entityType", "id", "username"],
            raw.GetProperty("items")[0].EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Walking_the_pages_returns_every_row_once_in_order_even_when_many_share_an_instant()
    {
        using var owner = await api.NewUserClientAsync("walk-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "walk-owner");
        // 60 rows in 12 instants of 5 rows each (one SaveChanges stamps every row with one instant, so ties are normal).
        await api.ExecuteAsync($"""
            INSERT INTO activities (id, workspace_id, action, entity_type, created_at)
            SELECT gen_random_uuid(), '{workspaceId}', 'test.tied', 'system', timestamptz '2026-01-01 00:00:00+00' + (i / 5) * interval '1 second'
            FROM generate_series(0, 59) AS i
            """);
        var expected = await api.ColumnAsync(
            $"SELECT id FROM activities WHERE workspace_id = '{workspaceId}' ORDER BY created_at DESC, id DESC");
        Assert.Equal(61, expected.Count);

        foreach (var limit in new[] { 1, 4, 5, 7, 61, 200 })
        {
            var walked = await WalkAsync(owner, slug, limit);
            Assert.Equal(expected, walked.Select(i => i.Id.ToString()));
        }
    }

    [Fact]
    public async Task Rows_added_while_walking_do_not_shift_later_pages()
    {
        using var owner = await api.NewUserClientAsync("stable-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "stable-owner");
        for (var i = 0; i < 4; i++) await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { name = $"Name {i}" });

        var first = await PageAsync(owner, $"/api/workspaces/{slug}/activities?limit=2");
        await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { name = "Newer" }); // lands before page one
        var rest = await PageAsync(owner, $"/api/workspaces/{slug}/activities?limit=200&cursor={first.NextCursor}");

        var seen = first.Items.Concat(rest.Items).Select(i => i.Id).ToList();
        Assert.Equal(seen.Distinct().Count(), seen.Count);
        Assert.Equal(5, seen.Count);
        Assert.Equal(6L, await api.ScalarAsync<long>("SELECT count(*) FROM activities WHERE workspace_id = @w", ("w", workspaceId)));
    }

    [Fact]
    public async Task The_log_shows_only_this_workspace_and_keeps_the_name_of_a_deleted_user()
    {
        using var owner = await api.NewUserClientAsync("scoped-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "scoped-owner");
        using var other = await api.NewUserClientAsync("scoped-other");
        var (otherSlug, _) = await ApiFixture.NewWorkspaceAsync(other, "scoped-other");
        await other.PatchAsJsonAsync($"/api/workspaces/{otherSlug}", new { name = "Other renamed" });

        using var admin = await api.AdminAsync();
        await api.NewUserClientAsync("scoped-leaver");
        Assert.Equal(HttpStatusCode.Created,
            (await owner.PutAsJsonAsync($"/api/workspaces/{slug}/members/scoped-leaver", new { role = "Viewer" })).StatusCode);
        var leaverId = await api.ScalarAsync<Guid>("SELECT id FROM users WHERE username = 'scoped-leaver'");
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/users/{leaverId}")).StatusCode);

        var items = (await WalkAsync(owner, slug, 50)).ToList();
        Assert.Equal(["member.removed", "member.added", "workspace.created"], items.Select(i => i.Action));
        Assert.Equal("admin", items[0].Username);
        Assert.Equal("scoped-leaver", items[0].Details!.Value.GetProperty("username").GetString());
        Assert.Equal(await api.ScalarAsync<long>("SELECT count(*) FROM activities WHERE workspace_id = @w", ("w", workspaceId)), items.Count);

        // The user who acted is shown even after being deleted.
        await api.ExecuteAsync($"""
            INSERT INTO activities (id, workspace_id, user_id, action, entity_type, created_at)
            VALUES (gen_random_uuid(), '{workspaceId}', '{leaverId}', 'member.left', 'member', now() + interval '1 minute')
            """);
        var newest = (await PageAsync(owner, $"/api/workspaces/{slug}/activities?limit=1")).Items[0];
        Assert.Equal("scoped-leaver", newest.Username);
    }

    [Fact]
    public async Task Outsiders_get_404_and_anonymous_callers_401()
    {
        using var outsider = await api.NewUserClientAsync("log-outsider");
        await HttpAssert.ProblemAsync(await outsider.GetAsync("/api/workspaces/twsbp/activities"), HttpStatusCode.NotFound);
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.GetAsync("/api/workspaces/twsbp/activities"), HttpStatusCode.Unauthorized);
        using var user = await api.UserAsync(); // a Member reads the log
        Assert.Equal(HttpStatusCode.OK, (await user.GetAsync("/api/workspaces/twsbp/activities")).StatusCode);
    }

    public static TheoryData<string, string> BadQueries()
    {
        var wrongFormat = new byte[25];
        wrongFormat[0] = 9;
        var tooShort = new byte[10];
        tooShort[0] = 1;
        var ticksOutOfRange = new byte[25];
        ticksOutOfRange[0] = 1;
        ticksOutOfRange.AsSpan(1, 8).Fill(0x7f);
        return new TheoryData<string, string>
        {
            { "limit=0", "limit" },
            { "limit=201", "limit" },
            { "limit=-5", "limit" },
            { "limit=ten", "limit" },
            { "cursor=not-a-cursor!", "cursor" },
            { "cursor=", "cursor" },
            { "cursor=" + Base64Url.EncodeToString(wrongFormat), "cursor" },
            { "cursor=" + Base64Url.EncodeToString(tooShort), "cursor" },
            { "cursor=" + Base64Url.EncodeToString(ticksOutOfRange), "cursor" },
            { "cursor=" + new string('A', 500), "cursor" },
            { "cursor=%00", "cursor" },
        };
    }

    [Theory]
    [MemberData(nameof(BadQueries))]
    public async Task Bad_limits_and_malformed_cursors_are_400_naming_the_parameter(string query, string field)
    {
        using var user = await api.UserAsync();
        await HttpAssert.ValidationProblemAsync(await user.GetAsync($"/api/workspaces/twsbp/activities?{query}"), field);
    }

    [Fact]
    public async Task The_default_page_is_50_and_the_query_count_does_not_grow_with_the_limit()
    {
        using var owner = await api.NewUserClientAsync("count-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "count-owner");
        await api.ExecuteAsync($"""
            INSERT INTO activities (id, workspace_id, user_id, action, entity_type, created_at)
            SELECT gen_random_uuid(), '{workspaceId}', (SELECT id FROM users WHERE username = 'count-owner'), 'test.counted', 'system',
                   now() - i * interval '1 millisecond'
            FROM generate_series(1, 300) AS i
            """);
        await owner.GetAsync($"/api/workspaces/{slug}/activities"); // warm up: session cache, prepared plans

        using var counter = new DatabaseCommandCounter(api.DatabaseName, requestsOnly: true);
        var defaultPage = await PageAsync(owner, $"/api/workspaces/{slug}/activities");
        Assert.Equal(50, defaultPage.Items.Count);
        var atDefault = counter.Commands.Count;
        counter.Reset();
        var one = await PageAsync(owner, $"/api/workspaces/{slug}/activities?limit=1");
        var atOne = counter.Commands.Count;
        counter.Reset();
        var most = await PageAsync(owner, $"/api/workspaces/{slug}/activities?limit=200&cursor={one.NextCursor}");
        var atMost = counter.Commands.Count;

        Assert.Equal(200, most.Items.Count);
        Assert.Equal(atOne, atDefault);
        Assert.Equal(atOne, atMost);
        Assert.InRange(atMost, 1, 2);
    }

    [Fact]
    public async Task The_page_query_walks_the_workspace_created_at_index()
    {
        using var owner = await api.NewUserClientAsync("plan-owner");
        var (_, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "plan-owner");
        // Enough rows, most of them another workspace's, for the planner to prefer the index on its merits. (With a
        // quarter of the rows this workspace's, walking the primary key backwards and filtering was as cheap, and the
        // planner chose either under load.)
        await api.ExecuteAsync($"""
            INSERT INTO activities (id, workspace_id, action, entity_type, created_at)
            SELECT gen_random_uuid(), CASE WHEN i % 40 = 0 THEN '{workspaceId}'::uuid ELSE (SELECT id FROM workspaces WHERE slug = 'twsbp') END,
                   'test.planned', 'system', now() - i * interval '1 second'
            FROM generate_series(1, 40000) AS i;
            ANALYZE activities;
            """);

        await using var db = api.CreateDbContext();
        foreach (var cursor in new ActivityCursor?[] { null, new ActivityCursor(DateTimeOffset.UtcNow.AddHours(-2), Guid.CreateVersion7()) })
        {
            var months = await new ActivityMonthSpanCache(TimeProvider.System).GetAsync(db, CancellationToken.None);
            var plan = await ActivityPageCommands.ExplainAsync(db, "EXPLAIN", workspaceId, cursor, 51, months);
            var text = string.Join('\n', plan);
            TestContext.Current.TestOutputHelper?.WriteLine("PLAN>>\n" + text);
            // Each monthly partition's copy of ix_activities_workspace_id_created_at gives the order: no month is read
            // whole (only the first rows of the two parts, the months and the default partition, are merged).
            Assert.Contains("_workspace_id_created_at", text);
            Assert.DoesNotContain(plan, line => line.Contains("Seq Scan on activities_y", StringComparison.Ordinal));
            // After a cursor, the index seeks straight to it: the (created_at, id) comparison is an index condition.
            if (cursor is not null) Assert.Contains(plan, line => line.Contains("Index Cond") && line.Contains("created_at"));
        }
    }

    [Fact]
    public void A_cursor_round_trips_and_rejects_tampering()
    {
        var original = new ActivityCursor(new DateTimeOffset(2026, 11, 23, 10, 0, 0, TimeSpan.Zero).AddTicks(1230), Guid.CreateVersion7());
        var text = original.Encode();
        Assert.True(ActivityCursor.TryDecode(text, out var decoded));
        Assert.Equal(original, decoded);
        Assert.DoesNotContain('+', text);
        Assert.DoesNotContain('/', text);
        Assert.DoesNotContain('=', text);
        Assert.False(ActivityCursor.TryDecode(text[..^2], out _));
        Assert.False(ActivityCursor.TryDecode(text + "AA", out _));
    }
}
