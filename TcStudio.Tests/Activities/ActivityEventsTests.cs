using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NpgsqlTypes;
using TcStudio.Api.Events;
using TcStudio.Api.Procedures;
using TcStudio.SystemDatabase.Activities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Activities;

/// <summary>
/// The API with the live stream's timers shortened for tests: heartbeats and access checks every second, a listener
/// that waits 1.5 s before reconnecting (so writes land in its gap), no idle re-reads (so only notifications and the
/// gap fill can deliver), small batches and a small buffer (so resumes page through the table).
/// </summary>
public class EventsApiFixture(PostgresServer server) : ApiFixture(server)
{
    public const int BatchSize = 25;
    public const int BufferedEvents = 50;

    /// <summary>Short, so the revocation tests wait little; the fan-out test keeps the product's default.</summary>
    protected virtual string AccessCheckInterval => "00:00:01";

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Events:HeartbeatInterval", "00:00:01"),
        new("Events:AccessCheckInterval", AccessCheckInterval),
        new("Events:ListenerReconnectDelay", "00:00:01.5"),
        new("Events:IdlePollInterval", "01:00:00"),
        new("Events:BatchSize", BatchSize.ToString()),
        new("Events:BufferedEvents", BufferedEvents.ToString()),
    ];
}

public sealed class ActivityEventsTests(EventsApiFixture api) : IClassFixture<EventsApiFixture>
{
    internal static Task<EventStreamClient> OpenAsync(HttpClient client, string slug, string? lastEventId = null) =>
        EventStreamClient.OpenAsync(client, $"/api/workspaces/{slug}/events", lastEventId);

    /// <summary>Activities written straight into the table, each in its own transaction, ids v7 as the product makes them.</summary>
    private Task<List<Guid>> InsertActivitiesAsync(Guid workspaceId, int count, string action = "test.streamed") =>
        InsertActivitiesAsync(api, workspaceId, count, action);

    internal static async Task<List<Guid>> InsertActivitiesAsync(ApiFixture api, Guid workspaceId, int count, string action)
    {
        var ids = new List<Guid>();
        await using var connection = await api.OpenConnectionAsync();
        for (var i = 0; i < count; i++)
        {
            var id = Guid.CreateVersion7();
            await using var insert = new NpgsqlCommand(
                "INSERT INTO activities (id, workspace_id, action, entity_type, details) VALUES ($1, $2, $3, 'system', $4::jsonb)", connection)
            {
                Parameters = { new() { Value = id }, new() { Value = workspaceId }, new() { Value = action }, new() { Value = $"{{\"n\": {i}}}" } },
            };
            await insert.ExecuteNonQueryAsync();
            ids.Add(id);
        }
        return ids;
    }

    private static async Task<NpgsqlConnection> BeginAsync(SystemDatabaseFixture database)
    {
        var connection = await database.OpenConnectionAsync();
        await using var begin = new NpgsqlCommand("BEGIN", connection);
        await begin.ExecuteNonQueryAsync();
        return connection;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, params object[] values)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        await command.ExecuteNonQueryAsync();
    }

    internal static Guid IdOf(SseMessage message) => message.Activity.Id;

    [Fact]
    public async Task A_stream_shows_each_committed_activity_as_the_activity_log_shows_it()
    {
        using var owner = await api.NewUserClientAsync("live-owner");
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(owner, "live-owner");
        await using var stream = await OpenAsync(owner, slug);

        Assert.Equal(HttpStatusCode.OK, stream.Response.StatusCode);
        Assert.Equal("text/event-stream", stream.Response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("no-cache", stream.Response.Headers.CacheControl?.ToString());
        await stream.ReadyAsync(); // the workspace's creation happened before: a new stream starts live

        Assert.Equal(HttpStatusCode.Created, (await owner.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "live_report", sql = "SELECT 1" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await owner.PatchAsJsonAsync($"/api/workspaces/{slug}", new { name = "Live renamed" })).StatusCode);

        var events = await stream.ActivitiesAsync(2);
        Assert.Equal(["procedure.created", "workspace.updated"], events.Select(e => e.Activity.Action));
        Assert.All(events, e => Assert.False(string.IsNullOrEmpty(e.Id)));
        Assert.NotEqual(events[0].Id, events[1].Id);

        // The data is the activity log's item, byte for byte (the wire format itself, so read raw).
        var log = await HttpAssert.JsonAsync(await owner.GetAsync($"/api/workspaces/{slug}/activities?limit=2"));
        var logItems = log.GetProperty("items").EnumerateArray().Reverse().Select(i => i.GetRawText()).ToList();
        Assert.Equal(logItems, events.Select(e => e.Json.GetRawText()));
        Assert.Equal("live-owner", events[0].Activity.Username);
        Assert.Equal("live_report", events[0].Activity.Details!.Value.GetProperty("name").GetString());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Two_transactions_committing_in_reverse_id_order_are_both_delivered_exactly_once(bool olderTransactionHasSmallerId)
    {
        using var owner = await api.NewUserClientAsync($"race-owner-{olderTransactionHasSmallerId}".ToLowerInvariant());
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "race-owner");
        await using var stream = await OpenAsync(owner, slug);
        await stream.ReadyAsync();

        // smaller < larger by creation time; the row with the smaller id commits last, after the larger one was
        // visible: an "everything after the last id" cursor would skip it.
        var smaller = Guid.CreateVersion7();
        await Task.Delay(2);
        var larger = Guid.CreateVersion7();
        Assert.True(ActivityStreamPosition.Before(0) < new ActivityStreamPosition(0, smaller));
        Assert.True(new ActivityStreamPosition(1, smaller) < new ActivityStreamPosition(1, larger));

        await using var late = await BeginAsync(api);   // inserts `smaller`, commits last
        await using var early = await BeginAsync(api);  // inserts `larger`, commits first
        const string insert = "INSERT INTO activities (id, workspace_id, action, entity_type) VALUES ($1, $2, 'test.raced', 'system')";
        if (olderTransactionHasSmallerId)
        {
            // The late transaction takes its transaction id first: it holds the horizon back until it commits.
            await ExecuteAsync(late, insert, smaller, workspaceId);
            await ExecuteAsync(early, insert, larger, workspaceId);
        }
        else
        {
            // The early transaction takes its transaction id first: its row is safe to hand out at once.
            await ExecuteAsync(early, "SELECT pg_current_xact_id()");
            await ExecuteAsync(late, insert, smaller, workspaceId);
            await ExecuteAsync(early, insert, larger, workspaceId);
        }
        await ExecuteAsync(early, "COMMIT");
        if (!olderTransactionHasSmallerId)
        {
            // Already safe: it arrives while the other transaction is still open.
            Assert.Equal([larger], (await stream.ActivitiesAsync(1)).Select(IdOf));
        }
        await ExecuteAsync(late, "COMMIT");
        var after = (await InsertActivitiesAsync(workspaceId, 1, "test.after_race")).Single();

        var delivered = olderTransactionHasSmallerId
            ? (await stream.ActivitiesAsync(3)).Select(IdOf).ToList()
            : [larger, .. (await stream.ActivitiesAsync(2)).Select(IdOf)];
        Assert.Equal(olderTransactionHasSmallerId ? [smaller, larger, after] : [larger, smaller, after], delivered);

        // The stream's order is the table's (xid, id) order, and resuming from any event gives exactly what followed.
        var order = await api.ColumnAsync(
            $"SELECT id FROM activities WHERE workspace_id = '{workspaceId}' AND action LIKE 'test.%' ORDER BY xid, id");
        Assert.Equal(delivered.Select(id => id.ToString()), order);
        var firstId = stream.LastEventId; // of `after`
        await using var resumed = await OpenAsync(owner, slug, firstId);
        await resumed.ReadyAsync();
        var next = (await InsertActivitiesAsync(workspaceId, 1, "test.after_resume")).Single();
        Assert.Equal([next], (await resumed.ActivitiesAsync(1)).Select(IdOf));
    }

    [Fact]
    public async Task A_hundred_events_written_while_disconnected_arrive_in_order_after_reconnecting_then_live_ones()
    {
        using var owner = await api.NewUserClientAsync("resume-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "resume-owner");
        string lastSeen;
        await using (var first = await OpenAsync(owner, slug))
        {
            await first.ReadyAsync();
            var seen = await InsertActivitiesAsync(workspaceId, 1, "test.before_disconnect");
            Assert.Equal(seen, (await first.ActivitiesAsync(1)).Select(IdOf));
            lastSeen = first.LastEventId!;
        }

        // 100 while away: 60 in transactions of their own, 40 in one bulk COPY (the bulk writer's path).
        var missed = await InsertActivitiesAsync(workspaceId, 60, "test.missed");
        var bulk = Enumerable.Range(0, 40).Select(i =>
            new ActivityRecord(workspaceId, null, "test.missed_bulk", "system", DetailsJson: $"{{\"n\": {i}}}")).ToList();
        var writer = api.Factory.Services.GetRequiredService<ActivityBulkWriter>();
        Assert.Equal(40UL, await writer.AppendAsync(bulk));
        var expected = await api.ColumnAsync(
            $"SELECT id FROM activities WHERE workspace_id = '{workspaceId}' AND action LIKE 'test.missed%' ORDER BY xid, id");
        Assert.Equal(100, expected.Count);
        Assert.Equal(missed.Select(id => id.ToString()), expected.Take(60));

        // More than the feed keeps and than one read returns: the resume pages through the table.
        Assert.True(100 > EventsApiFixture.BufferedEvents && 100 > EventsApiFixture.BatchSize);
        await using var resumed = await OpenAsync(owner, slug, lastSeen);
        Assert.Equal(lastSeen, await resumed.ReadyAsync());
        var caughtUp = await resumed.ActivitiesAsync(100);
        Assert.Equal(expected, caughtUp.Select(e => IdOf(e).ToString()));
        Assert.Equal(caughtUp.Count, caughtUp.Select(e => e.Id).Distinct().Count());

        var live = await InsertActivitiesAsync(workspaceId, 3, "test.live_again");
        Assert.Equal(live, (await resumed.ActivitiesAsync(3)).Select(IdOf));

        // Resuming from the ready event's id (a client that saw no event) also loses nothing.
        string startedAt;
        await using (var idle = await OpenAsync(owner, slug)) startedAt = await idle.ReadyAsync();
        var whileAway = await InsertActivitiesAsync(workspaceId, 2, "test.away_again");
        await using var fromReady = await OpenAsync(owner, slug, startedAt);
        await fromReady.ReadyAsync();
        Assert.Equal(whileAway, (await fromReady.ActivitiesAsync(2)).Select(IdOf));
    }

    [Fact]
    public async Task Terminating_the_listening_connection_loses_nothing()
    {
        using var owner = await api.NewUserClientAsync("terminate-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "terminate-owner");
        await using var stream = await OpenAsync(owner, slug);
        await stream.ReadyAsync();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        void Log(string what) => TestContext.Current.TestOutputHelper?.WriteLine($"{sw.Elapsed.TotalSeconds:0.00} {what}");
        var listener = api.Factory.Services.GetRequiredService<ActivityNotificationListener>();
        var sessions = listener.Sessions;
        Assert.True(sessions >= 1);

        const string listenerQuery =
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE '% activity-listener'";
        var pid = (await api.ColumnAsync(listenerQuery)).Single();
        Assert.True(await api.ScalarAsync<bool>($"SELECT pg_terminate_backend({pid})"));
        Log("terminated");
        await WaitUntilAsync(async () => !(await api.ColumnAsync(listenerQuery)).Contains(pid));
        Log("gone");

        // Written while nobody listens (the listener waits 1.5 s before reconnecting): their notifications are lost.
        var written = await InsertActivitiesAsync(workspaceId, 20, "test.unheard");
        var listenersWhileWriting = await api.ColumnAsync(listenerQuery);
        TestContext.Current.TestOutputHelper?.WriteLine($"listener connections right after the writes: {listenersWhileWriting.Count}");

        Log("written");
        Assert.Equal(written, (await stream.ActivitiesAsync(20)).Select(IdOf));
        Log("delivered");
        Assert.True(listener.Sessions > sessions, $"listening sessions: {sessions} before, {listener.Sessions} after");
        var listeners = await api.ColumnAsync(listenerQuery);
        Assert.True(listeners.Count == 1 && listeners[0] != pid, $"listener pids: {string.Join(", ", listeners)} (terminated {pid})");

        var later = await InsertActivitiesAsync(workspaceId, 2, "test.heard");
        Assert.Equal(later, (await stream.ActivitiesAsync(2)).Select(IdOf));
    }

    [Fact]
    public async Task A_removed_member_is_disconnected_before_anything_that_follows_the_removal()
    {
        using var owner = await api.NewUserClientAsync("removal-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "removal-owner");
        using var member = await api.NewUserClientAsync("removal-member");
        Assert.Equal(HttpStatusCode.Created,
            (await owner.PutAsJsonAsync($"/api/workspaces/{slug}/members/removal-member", new { role = "Viewer" })).StatusCode);

        await using var stream = await OpenAsync(member, slug);
        await stream.ReadyAsync();
        await using var ownerStream = await OpenAsync(owner, slug);
        await ownerStream.ReadyAsync();
        var seen = await InsertActivitiesAsync(workspaceId, 1, "test.while_member");
        Assert.Equal(seen, (await stream.ActivitiesAsync(1)).Select(IdOf));

        Assert.Equal(HttpStatusCode.NoContent, (await owner.DeleteAsync($"/api/workspaces/{slug}/members/removal-member")).StatusCode);
        var after = await InsertActivitiesAsync(workspaceId, 1, "test.after_removal");

        // Everyone else goes on, the removal included.
        var ownerSees = await ownerStream.ActivitiesAsync(3);
        Assert.Equal(["test.while_member", "member.removed", "test.after_removal"], ownerSees.Select(e => e.Activity.Action));
        Assert.Equal(after.Single(), IdOf(ownerSees[2]));

        var end = await stream.NextAsync();
        Assert.NotNull(end);
        Assert.Equal("end", end.Event);
        Assert.Equal(EndReasons.AccessRevoked, end.Json.GetProperty("reason").GetString());
        Assert.Null(await stream.NextAsync()); // the server closed the stream
        await HttpAssert.ProblemAsync(await member.GetAsync($"/api/workspaces/{slug}/events"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_revoked_token_is_disconnected_within_the_access_check_interval()
    {
        using var user = await api.NewUserClientAsync("revoked-user");
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "revoked-user");
        await using var stream = await OpenAsync(user, slug);
        await stream.ReadyAsync();

        var userId = await api.ScalarAsync<Guid>("SELECT id FROM users WHERE username = 'revoked-user'");
        Assert.Equal(HttpStatusCode.NoContent, (await user.PutAsJsonAsync($"/api/users/{userId}/password",
            new { currentPassword = "a-password-123", newPassword = "another-password-456" })).StatusCode);

        // No activity of the workspace says so: the periodic check (every second here) notices.
        SseMessage? end;
        do end = await stream.NextAsync(); while (end is { Event: null });
        Assert.NotNull(end);
        Assert.Equal("end", end.Event);
        Assert.Equal(EndReasons.AccessRevoked, end.Json.GetProperty("reason").GetString());
        Assert.Null(await stream.NextAsync());
    }

    [Fact]
    public async Task An_idle_stream_gets_heartbeat_comments()
    {
        using var owner = await api.NewUserClientAsync("idle-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "idle-owner");
        await using var stream = await OpenAsync(owner, slug);
        await stream.ReadyAsync();

        var read = stream.NextAsync(TimeSpan.FromSeconds(60));
        await WaitUntilAsync(() => Task.FromResult(stream.Comments >= 2));
        Assert.False(read.IsCompleted); // comments are not events
        var written = await InsertActivitiesAsync(workspaceId, 1);
        Assert.Equal(written.Single(), IdOf((await read)!));
    }

    [Fact]
    public async Task Open_streams_and_delivery_lag_are_measured()
    {
        using var owner = await api.NewUserClientAsync("metric-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "metric-owner");
        var factory = api.Factory.Services.GetRequiredService<IMeterFactory>();
        long open = 0, delivered = 0;
        var lags = new List<double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == EventStreamMetrics.MeterName && instrument.Meter.Scope == factory) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (instrument.Name == EventStreamMetrics.OpenStreamsName) Interlocked.Add(ref open, value);
            if (instrument.Name == EventStreamMetrics.DeliveredName) Interlocked.Add(ref delivered, value);
        });
        listener.SetMeasurementEventCallback<double>((instrument, value, _, _) =>
        {
            if (instrument.Name == EventStreamMetrics.DeliveryLagName) lock (lags) lags.Add(value);
        });
        listener.Start();

        await using (var stream = await OpenAsync(owner, slug))
        {
            await stream.ReadyAsync();
            Assert.Equal(1, Interlocked.Read(ref open));
            await InsertActivitiesAsync(workspaceId, 2);
            await stream.ActivitiesAsync(2);
            await WaitUntilAsync(() => Task.FromResult(Interlocked.Read(ref delivered) == 2));
            lock (lags) Assert.Equal(2, lags.Count);
            lock (lags) Assert.All(lags, lag => Assert.InRange(lag, 0, 300));
        }
        await WaitUntilAsync(() => Task.FromResult(Interlocked.Read(ref open) == 0)); // the client left: the stream closed
    }

    [Fact]
    public async Task Outsiders_get_404_anonymous_callers_401_and_members_of_any_role_200()
    {
        using var outsider = await api.NewUserClientAsync("events-outsider");
        await HttpAssert.ProblemAsync(await outsider.GetAsync("/api/workspaces/twsbp/events"), HttpStatusCode.NotFound);
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.GetAsync("/api/workspaces/twsbp/events"), HttpStatusCode.Unauthorized);

        using var owner = await api.NewUserClientAsync("events-role-owner");
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(owner, "events-role-owner");
        using var viewer = await api.NewUserClientAsync("events-viewer");
        await owner.PutAsJsonAsync($"/api/workspaces/{slug}/members/events-viewer", new { role = "Viewer" });
        await using var stream = await OpenAsync(viewer, slug);
        Assert.Equal(HttpStatusCode.OK, stream.Response.StatusCode);
        await stream.ReadyAsync();
    }

    public static TheoryData<string> BadLastEventIds() =>
    [
        "not-a-position!",
        "AAAA",
        new string('A', 200),
        // A well-formed position far beyond the database's transaction horizon: not one the stream handed out.
        new ActivityStreamPosition(ulong.MaxValue / 2, Guid.CreateVersion7()).Encode(),
    ];

    [Theory]
    [MemberData(nameof(BadLastEventIds))]
    public async Task A_last_event_id_the_stream_did_not_send_is_400_naming_it(string lastEventId)
    {
        using var user = await api.UserAsync();
        await using var viaHeader = await OpenAsync(user, "twsbp", lastEventId);
        await HttpAssert.ValidationProblemAsync(viaHeader.Response, "Last-Event-ID");
        await HttpAssert.ValidationProblemAsync(
            await user.GetAsync($"/api/workspaces/twsbp/events?lastEventId={Uri.EscapeDataString(lastEventId)}"), "lastEventId");
    }

    [Fact]
    public async Task Positions_order_as_PostgreSQL_orders_xid_and_uuid_and_round_trip()
    {
        var random = new Random(7);
        var positions = Enumerable.Range(0, 300).Select(i =>
            new ActivityStreamPosition((ulong)random.Next(0, 4), i % 3 == 0 ? Guid.NewGuid() : Guid.CreateVersion7()))
            .Append(ActivityStreamPosition.Before(2)).ToList();
        var values = string.Join(", ", positions.Select(p => $"('{p.TransactionId}'::xid8, '{p.Id}'::uuid)"));
        var byDatabase = await api.ColumnAsync($"SELECT xid::text || '/' || id::text FROM (VALUES {values}) AS v(xid, id) ORDER BY xid, id");
        Assert.Equal(byDatabase, positions.Order().Select(p => $"{p.TransactionId}/{p.Id}"));

        foreach (var position in positions.Take(20))
        {
            Assert.True(ActivityStreamPosition.TryDecode(position.Encode(), out var decoded));
            Assert.Equal(position, decoded);
        }
    }

    [Fact]
    public async Task The_trigger_notifies_workspace_ids_once_per_transaction_and_a_star_past_100_workspaces()
    {
        var workspaces = await api.ColumnAsync("SELECT id FROM workspaces ORDER BY id LIMIT 1");
        var existing = Guid.Parse(workspaces.Single());
        // 101 workspaces for the bulk case.
        await using var setup = await api.OpenConnectionAsync();
        var owner = await api.ScalarAsync<Guid>("SELECT id FROM users WHERE username = 'admin'");
        var many = Enumerable.Range(0, 101).Select(_ => Guid.CreateVersion7()).ToList();
        foreach (var id in many)
        {
            await ExecuteAsync(setup,
                "INSERT INTO workspaces (id, name, slug, created_by, created_at, updated_at) VALUES ($1, 'n', $2, $3, now(), now())",
                id, ApiFixture.NewSlug("notify"), owner);
        }

        await using var listen = await api.OpenConnectionAsync();
        var payloads = new List<string>();
        listen.Notification += (_, e) => { lock (payloads) payloads.Add(e.Payload); };
        await ExecuteAsync(listen, $"LISTEN {ActivityStreamDatabase.NotifyChannel}");

        // Several statements and rows for two workspaces in one transaction: one notification with both ids, sorted.
        await using (var writer = await BeginAsync(api))
        {
            for (var i = 0; i < 3; i++)
            {
                await ExecuteAsync(writer, "INSERT INTO activities (id, workspace_id, action, entity_type) "
                    + "VALUES ($1, $2, 'test.notified', 'system'), ($3, $4, 'test.notified', 'system')",
                    Guid.CreateVersion7(), existing, Guid.CreateVersion7(), many[0]);
            }
            await ExecuteAsync(writer, "INSERT INTO activities (id, workspace_id, action, entity_type) VALUES ($1, NULL, 'test.unscoped', 'system')",
                Guid.CreateVersion7());
            await ExecuteAsync(writer, "COMMIT");
        }
        // A bulk COPY over 101 workspaces: the payload would pass 8000 bytes with every id, so it is '*'. (COPY straight
        // into the table is the path of a role that bypasses row-level security, such as the worker's owner; the app
        // role's path inserts workspace by workspace, one notification each.)
        await using var bypassing = NpgsqlDataSource.Create(api.ConnectionString);
        await new ActivityBulkWriter(bypassing, TimeProvider.System)
            .AppendAsync(many.Select(w => new ActivityRecord(w, null, "test.bulk_notified", "system")));
        // Rows without a workspace notify nothing.
        await ExecuteAsync(setup, "INSERT INTO activities (id, workspace_id, action, entity_type) VALUES ($1, NULL, 'test.unscoped', 'system')",
            Guid.CreateVersion7());

        await ExecuteAsync(listen, "SELECT 1"); // delivers what arrived
        await WaitUntilAsync(async () =>
        {
            await listen.WaitAsync(TimeSpan.FromMilliseconds(100));
            lock (payloads) return payloads.Count >= 2;
        });
        await listen.WaitAsync(TimeSpan.FromMilliseconds(300));
        string[] expectedPair = [existing.ToString(), many[0].ToString()];
        Array.Sort(expectedPair, (a, b) => new ActivityStreamPosition(0, Guid.Parse(a)).CompareTo(new ActivityStreamPosition(0, Guid.Parse(b))));
        lock (payloads) Assert.Equal([string.Join(',', expectedPair), "*"], payloads);
    }

    [Fact]
    public async Task The_stream_read_seeks_the_workspace_xid_index_from_the_position()
    {
        using var owner = await api.NewUserClientAsync("stream-plan-owner");
        var (_, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "stream-plan");
        await api.ExecuteAsync($"""
            INSERT INTO activities (id, workspace_id, action, entity_type, created_at)
            SELECT gen_random_uuid(), CASE WHEN i % 4 = 0 THEN '{workspaceId}'::uuid ELSE (SELECT id FROM workspaces WHERE slug = 'twsbp') END,
                   'test.planned', 'system', now()
            FROM generate_series(1, 40000) AS i;
            ANALYZE activities;
            """);

        await using var connection = await api.OpenConnectionAsync();
        await using var explain = new NpgsqlCommand("EXPLAIN " + ActivityStreamDatabase.ReadAfterSql, connection)
        {
            Parameters =
            {
                new() { Value = workspaceId, NpgsqlDbType = NpgsqlDbType.Uuid },
                new() { Value = 5UL, NpgsqlDbType = NpgsqlDbType.Xid8 },
                new() { Value = Guid.CreateVersion7(), NpgsqlDbType = NpgsqlDbType.Uuid },
                new() { Value = 500, NpgsqlDbType = NpgsqlDbType.Integer },
            },
        };
        var plan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync()) plan.Add(reader.GetString(0));
        }
        var text = string.Join('\n', plan);
        TestContext.Current.TestOutputHelper?.WriteLine(text);
        // Each monthly partition's copy of ix_activities_workspace_id_xid (activities_yYYYYmMM_workspace_id_xid_id_idx).
        Assert.Contains("_workspace_id_xid", text);
        Assert.DoesNotContain("Seq Scan on activities", text); // neither the read nor the probe for held-back rows
        // The position and the horizon bound the index scan itself; no sort of the workspace's rows.
        Assert.Contains(plan, line => line.Contains("Index Cond") && line.Contains("xid") && line.Contains("workspace_id"));
        var limit = plan.FindIndex(line => line.Contains("Limit"));
        Assert.True(limit >= 0, text);
        // The partitions' index scans are merged in order (Merge Append's "Sort Key"); nothing below the limit sorts.
        Assert.DoesNotContain(plan.Skip(limit), line => System.Text.RegularExpressions.Regex.IsMatch(line, @"^\s*(->\s+)?Sort\s+\("));
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!await condition())
        {
            await Task.Delay(50, deadline.Token);
        }
    }
}

/// <summary>The events settings of <see cref="EventsApiFixture"/> with the product's access-check interval (30 s).</summary>
public sealed class FanOutEventsApiFixture(PostgresServer server) : EventsApiFixture(server)
{
    protected override string AccessCheckInterval => "00:00:30";
}

/// <summary>
/// Fan-out on its own fixture: 500 streams re-checking access every second (the other tests' interval) would be 500
/// queries a second on a 10-connection pool, a load test of the access check rather than of delivery.
/// </summary>
public sealed class ActivityEventsFanOutTests(FanOutEventsApiFixture api) : IClassFixture<FanOutEventsApiFixture>
{
    [Fact]
    public async Task Five_hundred_concurrent_subscribers_each_receive_every_event_in_the_same_order()
    {
        const int subscribers = 500;
        using var owner = await api.NewUserClientAsync("crowd-owner");
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "crowd-owner");
        using var budget = new CancellationTokenSource(TimeSpan.FromMinutes(4)); // a hang fails; speed is the benchmark's
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var streams = new EventStreamClient[subscribers];
        var retried = 0;
        var readyCount = 0;
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, subscribers),
                new ParallelOptions { MaxDegreeOfParallelism = 50, CancellationToken = budget.Token },
                async (i, cancellationToken) =>
                {
                    // A loaded machine may answer a connect with 503 (no pooled connection within the connect timeout);
                    // a client retries after Retry-After, as this one does.
                    while (true)
                    {
                        var stream = await ActivityEventsTests.OpenAsync(owner, slug);
                        if (stream.Response.StatusCode != HttpStatusCode.ServiceUnavailable)
                        {
                            streams[i] = stream; // ReadyAsync below reports any other failure with its body
                            break;
                        }
                        Interlocked.Increment(ref retried);
                        await stream.DisposeAsync();
                        await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
                    }
                    await streams[i].ReadyAsync();
                    if (Interlocked.Increment(ref readyCount) % 100 == 0)
                    {
                        TestContext.Current.TestOutputHelper?.WriteLine($"{readyCount} ready after {clock.Elapsed.TotalSeconds:0.0} s");
                    }
                });
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"{subscribers} streams open and ready after {clock.Elapsed.TotalSeconds:0.0} s; connects retried after a 503: {retried}");

            // Written through the API while 500 streams are open: the pool (10 connections) is not held by them.
            var expected = new List<Guid>();
            for (var i = 0; i < 10; i++)
            {
                var created = await HttpAssert.ReadAsync<ProcedureDraft>(await owner.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
                    new { name = $"crowd_{i}", sql = "SELECT 1" }), HttpStatusCode.Created);
                expected.Add(await api.ScalarAsync<Guid>("SELECT id FROM activities WHERE entity_id = @p", ("p", created.Id)));
            }
            expected.AddRange(await ActivityEventsTests.InsertActivitiesAsync(api, workspaceId, 10, "test.crowd"));

            var received = await Task.WhenAll(streams.Select(async s =>
                (await s.ActivitiesAsync(expected.Count, TimeSpan.FromMinutes(2))).Select(ActivityEventsTests.IdOf).ToList()));
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"every stream received all {expected.Count} events after {clock.Elapsed.TotalSeconds:0.0} s");
            Assert.All(received, ids => Assert.Equal(expected, ids));
        }
        finally
        {
            foreach (var stream in streams) if (stream is not null) await stream.DisposeAsync();
        }
    }
}
