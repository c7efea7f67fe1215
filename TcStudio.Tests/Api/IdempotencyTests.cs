using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.Api.Environments;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Members;
using TcStudio.Api.Procedures;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// Idempotency-Key on POST: a retry with the same key and request gets the first response again (status, body,
/// ETag, Location) and the work is not done twice; another request under the same key is a 422; a duplicate while
/// the first runs is a 409; keys are per user, expire, and nothing is stored for a failed request.
/// </summary>
public sealed class IdempotencyTests(IdempotencyTests.Fixture api) : IClassFixture<IdempotencyTests.Fixture>
{
    /// <summary>Long lock waits: the tests hold locks on purpose while requests are in flight.</summary>
    public sealed class Fixture(PostgresServer server) : WorkspaceApiFixture(server)
    {
        protected override IEnumerable<KeyValuePair<string, string?>> ExtraSettings => [new("Database:LockTimeout", "00:00:30")];
    }

    private static HttpRequestMessage Post(string path, string key, object? body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = body is null ? null : JsonContent.Create(body) };
        request.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, key);
        return request;
    }

    private Task<long> CountAsync(string sql, params (string, object)[] parameters) => api.ScalarAsync<long>(sql, parameters);

    private static bool Replayed(HttpResponseMessage response) =>
        response.Headers.TryGetValues(IdempotentRequests.ReplayedHeader, out var values) && values.Single() == "true";

    /// <summary>
    /// Only POSTs honour the key (the filter is not even built for other methods): a key sent with a GET or a PUT is
    /// neither stored nor replayed, so an attacker cannot pin a stale answer or make a change skip its work.
    /// </summary>
    [Fact]
    public async Task A_key_on_a_get_or_a_put_stores_nothing_and_replays_nothing()
    {
        using var owner = await api.UserAsync();
        var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "idem-other");
        await HttpAssert.JsonAsync(await owner.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "p", sql = "select 1" }),
            HttpStatusCode.Created);
        var key = "other-" + Guid.NewGuid().ToString("N");
        var keys = await CountAsync("SELECT count(*) FROM idempotency_keys");

        foreach (var sql in new[] { "select 2", "select 3" })
        {
            using var put = new HttpRequestMessage(HttpMethod.Put, $"/api/workspaces/{slug}/procedures/p")
            {
                Content = JsonContent.Create(new { sql }),
            };
            put.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, key);
            using var response = await owner.SendAsync(put);
            await HttpAssert.JsonAsync(response);
            Assert.False(Replayed(response));
            Assert.Equal(sql, await api.ScalarAsync<string>(
                "SELECT sql_draft FROM stored_procedures WHERE workspace_id = @w AND name = 'p'", ("w", workspaceId)));
        }
        using var get = new HttpRequestMessage(HttpMethod.Get, $"/api/workspaces/{slug}");
        get.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, key);
        using var read = await owner.SendAsync(get);
        Assert.Equal(slug, (await HttpAssert.ReadAsync<TcStudio.Api.Workspaces.WorkspaceDetails>(read)).Slug);
        Assert.False(Replayed(read));
        Assert.Equal(keys, await CountAsync("SELECT count(*) FROM idempotency_keys"));
    }

    [Fact]
    public async Task A_retry_with_the_same_key_and_body_gets_the_first_response_and_the_work_is_done_once()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "idem");
        var key = Guid.NewGuid().ToString();
        var body = new { name = "once", sql = "select 1" };

        var first = await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, body));
        var second = await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, body));

        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.Created, second.StatusCode);
        Assert.False(Replayed(first));
        Assert.True(Replayed(second));
        Assert.Equal(await first.Content.ReadAsByteArrayAsync(), await second.Content.ReadAsByteArrayAsync());
        Assert.Equal(first.Headers.ETag, second.Headers.ETag);
        Assert.NotNull(first.Headers.ETag);
        Assert.Equal(first.Headers.Location, second.Headers.Location);
        Assert.Equal(first.Content.Headers.ContentType, second.Content.Headers.ContentType);
        Assert.Equal(1L,
            await CountAsync("SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));
        Assert.Equal(1L, await CountAsync(
            "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = 'procedure.created'",
            ("s", slug)));

        // A quoted key (as the IETF draft writes it) is the same key.
        var quoted = await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", $"\"{key}\"", body));
        Assert.True(Replayed(quoted));

        // Workspaces and users are created through other filters: they replay the same way.
        using var admin = await api.AdminAsync();
        var workspaceKey = Guid.NewGuid().ToString();
        var workspaceBody = new { name = "W", slug = ApiFixture.NewSlug("idem-ws") };
        var ws1 = await admin.SendAsync(Post("/api/workspaces", workspaceKey, workspaceBody));
        var ws2 = await admin.SendAsync(Post("/api/workspaces", workspaceKey, workspaceBody));
        Assert.Equal(HttpStatusCode.Created, ws2.StatusCode);
        Assert.True(Replayed(ws2));
        Assert.Equal(await ws1.Content.ReadAsStringAsync(), await ws2.Content.ReadAsStringAsync());
        var userKey = Guid.NewGuid().ToString();
        var userBody = new { username = "idem-" + Guid.NewGuid().ToString("N")[..8], password = "a-password-123", role = "User" };
        var u1 = await admin.SendAsync(Post("/api/users", userKey, userBody));
        var u2 = await admin.SendAsync(Post("/api/users", userKey, userBody));
        Assert.Equal(HttpStatusCode.Created, u2.StatusCode);
        Assert.True(Replayed(u2));
        Assert.Equal(u1.Headers.ETag, u2.Headers.ETag);
        Assert.Equal(1L, await CountAsync("SELECT count(*) FROM users WHERE username = @u", ("u", userBody.username)));
    }

    [Fact]
    public async Task The_same_key_with_another_body_or_path_is_422_and_changes_nothing()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "idem");
        var (otherSlug, _) = await ApiFixture.NewWorkspaceAsync(user, "idem");
        var key = Guid.NewGuid().ToString();
        await HttpAssert.ReadAsync<ProcedureDraft>(await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key,
            new { name = "a", sql = "select 1" })),
            HttpStatusCode.Created);
        var rows = await CountAsync("SELECT count(*) FROM stored_procedures");

        var otherBody = await HttpAssert.ProblemAsync(
            await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, new { name = "b", sql = "select 1" })),
            HttpStatusCode.UnprocessableContent);
        Assert.Equal(key, otherBody.GetProperty("idempotencyKey").GetString());
        await HttpAssert.ProblemAsync(
            await user.SendAsync(Post($"/api/workspaces/{otherSlug}/procedures", key, new { name = "a", sql = "select 1" })),
            HttpStatusCode.UnprocessableContent);
        // Whitespace is part of the body: a different body is a different request.
        var spaced = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures")
        {
            Content = RawJson.Content("{ \"name\": \"a\", \"sql\": \"select 1\" }"),
        };
        spaced.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, key);
        await HttpAssert.ProblemAsync(await user.SendAsync(spaced), HttpStatusCode.UnprocessableContent);
        Assert.Equal(rows, await CountAsync("SELECT count(*) FROM stored_procedures"));
    }

    [Fact]
    public async Task Keys_are_per_user_and_a_failed_request_stores_nothing()
    {
        using var owner = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(owner, "idem");
        using var member = await api.NewUserClientAsync("idem-" + Guid.NewGuid().ToString("N")[..8]);
        var memberName = (await HttpAssert.ReadAsync<MeResponse>(await member.GetAsync("/api/me"))).Username;
        await HttpAssert.ReadAsync<MemberResponse>(
            await owner.PutAsJsonAsync($"/api/workspaces/{slug}/members/{memberName}", new { role = "Member" }), HttpStatusCode.Created);
        const string key = "shared-key-1";

        var mine = await owner.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, new { name = "mine", sql = "select 1" }));
        var theirs = await member.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, new { name = "theirs", sql = "select 1" }));
        Assert.Equal(HttpStatusCode.Created, mine.StatusCode);
        Assert.Equal(HttpStatusCode.Created, theirs.StatusCode);
        Assert.False(Replayed(theirs));

        // A 4xx is not stored: fixing the request and sending it with the same key does the work.
        var keys = await CountAsync("SELECT count(*) FROM idempotency_keys");
        const string fixKey = "fix-and-retry";
        await HttpAssert.ValidationProblemAsync(
            await owner.SendAsync(Post($"/api/workspaces/{slug}/procedures", fixKey, new { name = "1bad", sql = "select 1" })), "name");
        Assert.Equal(keys, await CountAsync("SELECT count(*) FROM idempotency_keys"));
        var fixedResponse = await owner.SendAsync(Post($"/api/workspaces/{slug}/procedures", fixKey, new { name = "good", sql = "select 1" }));
        Assert.Equal(HttpStatusCode.Created, fixedResponse.StatusCode);
        Assert.False(Replayed(fixedResponse));
    }

    [Fact]
    public async Task Malformed_keys_are_400_naming_the_header_and_change_nothing()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "idem");
        var rows = await CountAsync("SELECT count(*) FROM stored_procedures");
        // Sent as given (HttpClient would trim or re-encode some of them); an empty value is tested on the wire
        // (WireLevelInputTests): the in-memory server cannot tell it from an absent header.
        foreach (var bad in new[] { " ", new string('k', 256), "two words", "a,b", "\"unterminated", "\"bad\\escape\"", "caf\u00e9", "\"\"",
            "k\u0001" })
        {
            var response = await RawTestServer.SendAsync(api.Factory, HttpMethod.Post, $"/api/workspaces/{slug}/procedures",
                [("Authorization", user.DefaultRequestHeaders.Authorization!.ToString()), (IdempotentRequests.HeaderName, bad)],
                """{"name":"k","sql":"select 1"}""");
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"'{bad}' → {(int)response.StatusCode}");
            await HttpAssert.ValidationProblemAsync(response, IdempotentRequests.HeaderName);
        }
        var twice = Post($"/api/workspaces/{slug}/procedures", "one", new { name = "k", sql = "select 1" });
        twice.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, "two");
        await HttpAssert.ValidationProblemAsync(await user.SendAsync(twice), IdempotentRequests.HeaderName);
        Assert.Equal(rows, await CountAsync("SELECT count(*) FROM stored_procedures"));
        Assert.True(IdempotentRequests.TryParseKey(new(new string('k', 255)), out _));
    }

    [Fact]
    public async Task A_duplicate_while_the_first_is_still_running_is_409_and_afterwards_replays_the_first()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "idem");
        var key = Guid.NewGuid().ToString();
        var body = new { name = "slow", sql = "select 1" };

        // Inserts into stored_procedures wait while this lock is held (reads do not).
        await using var blocker = await api.OpenConnectionAsync();
        await using var transaction = await blocker.BeginTransactionAsync();
        await new NpgsqlCommand("LOCK TABLE stored_procedures IN EXCLUSIVE MODE", blocker, transaction).ExecuteNonQueryAsync();

        var first = user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, body));
        await WaitForBlockedBackendAsync(api);
        var duplicate = await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, body));
        await HttpAssert.ProblemAsync(duplicate, HttpStatusCode.Conflict);
        Assert.Equal(TimeSpan.FromSeconds(1), duplicate.Headers.RetryAfter?.Delta);
        await transaction.RollbackAsync();

        var firstResponse = await first;
        Assert.Equal(HttpStatusCode.Created, firstResponse.StatusCode);
        var after = await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, body));
        Assert.True(Replayed(after));
        Assert.Equal(await firstResponse.Content.ReadAsStringAsync(), await after.Content.ReadAsStringAsync());
    }

    private const string Stamp = """
        CREATE FUNCTION stamp(tag text) RETURNS TABLE (label text, at text, noise double precision)
        LANGUAGE sql VOLATILE
        AS $$ SELECT tag, clock_timestamp()::text, random() $$;
        """;

    private const string Slow = """
        CREATE FUNCTION slow_stamp() RETURNS TABLE (at text)
        LANGUAGE sql VOLATILE
        AS $$ SELECT pg_sleep(2)::text || clock_timestamp()::text $$;
        """;

    [Fact]
    public async Task Publish_execute_and_environment_creation_replay_and_never_run_twice()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "idem");
        var database = api.NewDatabaseName("idem_env");

        // Creating an environment: the key is written with the final save; the replay equals what GET shows.
        var envKey = Guid.NewGuid().ToString();
        var envBody = new { name = "dev", server = "local", databaseName = database, create = true };
        var created = await admin.SendAsync(Post($"/api/workspaces/{slug}/environments", envKey, envBody));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var again = await admin.SendAsync(Post($"/api/workspaces/{slug}/environments", envKey, envBody));
        Assert.True(Replayed(again));
        Assert.Equal(HttpStatusCode.Created, again.StatusCode);
        var createdText = await created.Content.ReadAsStringAsync();
        Assert.Equal(createdText, await again.Content.ReadAsStringAsync());
        Assert.Equal(created.Headers.Location, again.Headers.Location);
        var fetched = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.GetAsync($"/api/workspaces/{slug}/environments/dev"));
        Assert.Equal(fetched.UpdatedAt, (await HttpAssert.ReadAsync<EnvironmentDetails>(created, HttpStatusCode.Created)).UpdatedAt);

        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "stamp", Stamp);
        var publishKey = Guid.NewGuid().ToString();
        var published = await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/stamp/publish?env=dev", publishKey, null));
        Assert.Equal(HttpStatusCode.OK, published.StatusCode);
        var republished = await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/stamp/publish?env=dev", publishKey, null));
        Assert.True(Replayed(republished));
        Assert.Equal(await published.Content.ReadAsStringAsync(), await republished.Content.ReadAsStringAsync());

        // Executing: the replay carries the first run's clock and random number, and only one run is logged.
        var executeKey = Guid.NewGuid().ToString();
        var executeBody = new { parameters = new { tag = "x" } };
        var executed = await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/stamp/execute?env=dev", executeKey, executeBody));
        Assert.Equal(HttpStatusCode.OK, executed.StatusCode);
        await Task.Delay(20);
        var reexecuted = await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/stamp/execute?env=dev", executeKey, executeBody));
        Assert.True(Replayed(reexecuted));
        Assert.Equal(await executed.Content.ReadAsStringAsync(), await reexecuted.Content.ReadAsStringAsync());

        // Validate writes nothing, and its key is kept all the same.
        var validateKey = Guid.NewGuid().ToString();
        await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/stamp/validate?env=dev", validateKey, null));
        Assert.True(Replayed(await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/stamp/validate?env=dev", validateKey, null))));

        var migrateKey = Guid.NewGuid().ToString();
        var migrated = await admin.SendAsync(Post($"/api/workspaces/{slug}/environments/dev/migrate", migrateKey, null));
        Assert.Equal(HttpStatusCode.OK, migrated.StatusCode);
        Assert.True(Replayed(await admin.SendAsync(Post($"/api/workspaces/{slug}/environments/dev/migrate", migrateKey, null))));

        foreach (var (action, expected) in new[] { ("environment.created", 1L), ("procedure.published", 1L), ("procedure.executed", 1L) })
        {
            Assert.Equal(expected, await CountAsync(
                "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = @a",
                ("s", slug), ("a", action)));
        }

        // A duplicate while an execution is still running in the workspace database: 409, not a second run.
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "slow_stamp", Slow);
        await HttpAssert.ReadAsync<PublishResponse>(await admin.PostAsync($"/api/workspaces/{slug}/procedures/slow_stamp/publish?env=dev", null));
        var slowKey = Guid.NewGuid().ToString();
        var slow = admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/slow_stamp/execute?env=dev", slowKey, new { }));
        await WaitUntilAsync(async () => await api.WorkspaceScalarAsync<long>(database,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%slow_stamp%' AND state = 'active' AND pid <> pg_backend_pid()") > 0);
        await HttpAssert.ProblemAsync(await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/slow_stamp/execute?env=dev", slowKey, new { })),
            HttpStatusCode.Conflict);
        var slowResponse = await slow;
        Assert.Equal(HttpStatusCode.OK, slowResponse.StatusCode);
        var slowAgain = await admin.SendAsync(Post($"/api/workspaces/{slug}/procedures/slow_stamp/execute?env=dev", slowKey, new { }));
        Assert.True(Replayed(slowAgain));
        Assert.Equal(await slowResponse.Content.ReadAsStringAsync(), await slowAgain.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Expired_keys_no_longer_count_and_are_cleaned_up()
    {
        using var user = await api.UserAsync();
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(user, "idem");
        var key = Guid.NewGuid().ToString();
        await HttpAssert.ReadAsync<ProcedureDraft>(await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key,
            new { name = "old", sql = "select 1" })),
            HttpStatusCode.Created);
        await api.ExecuteAsync(
            $"UPDATE idempotency_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE key = '{key}'");

        // Expired: the key is free again, so another request under it is new work, not a 422.
        var reused = await user.SendAsync(Post($"/api/workspaces/{slug}/procedures", key, new { name = "new", sql = "select 1" }));
        Assert.Equal(HttpStatusCode.Created, reused.StatusCode);
        Assert.False(Replayed(reused));

        await api.ExecuteAsync(
            $"UPDATE idempotency_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE key = '{key}'");
        var deleted = await api.Factory.Services.GetRequiredService<IdempotencyKeyCleanup>().DeleteExpiredAsync(CancellationToken.None);
        Assert.True(deleted >= 1);
        Assert.Equal(0L, await CountAsync("SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()"));
        Assert.Equal(0L, await CountAsync("SELECT count(*) FROM idempotency_keys WHERE key = @k", ("k", key)));
    }

    /// <summary>Until a backend of the fixture's database waits for a lock (observed from a connection of its own:
    /// pg_stat_activity is a snapshot per transaction).</summary>
    internal static Task WaitForBlockedBackendAsync(SystemDatabaseFixture database) =>
        WaitUntilAsync(async () => await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()") > 0);

    /// <summary>Until no backend of the database is busy and the given count has stayed the same for a second.</summary>
    internal static async Task WaitUntilSettledAsync(SystemDatabaseFixture database, string countSql)
    {
        long? previous = null;
        var stableSince = DateTime.UtcNow;
        await WaitUntilAsync(async () =>
        {
            var busy = await database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()");
            var count = await database.ScalarAsync<long>(countSql);
            if (busy > 0 || count != previous) stableSince = DateTime.UtcNow;
            previous = count;
            return DateTime.UtcNow - stableSince > TimeSpan.FromSeconds(1);
        });
    }

    internal static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("The condition did not come true within 30 s.");
            await Task.Delay(25);
        }
    }
}

/// <summary>
/// The ambiguity of a dropped connection, for real: requests sent over Kestrel whose connection is reset before the
/// answer (some commit, some do not), and a backend killed inside its transaction. Retried with the same key, each
/// write exists exactly once and the client can tell its own earlier write from anyone else's.
/// </summary>
public sealed class IdempotencyAcrossDroppedConnectionsTests(KestrelApiFixture api) : IClassFixture<KestrelApiFixture>
{
    private async Task<(HttpClient Client, string Token, string Slug)> ArrangeAsync()
    {
        var token = await api.LoginAsync("user", ApiFixture.UserPassword);
        var client = api.CreateAnonymousClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(client, "drop", "Dropped");
        return (client, token, slug);
    }

    [Fact]
    public async Task Connections_reset_mid_request_leave_each_write_once_and_the_retry_says_whose_it_is()
    {
        var (client, token, slug) = await ArrangeAsync();
        using var _ = client;
        var random = new Random(20261129);
        const int writers = 16;
        var keys = Enumerable.Range(0, writers).Select(i => $"drop-{i}-{Guid.NewGuid():N}").ToList();

        await Task.WhenAll(keys.Select(async (key, i) =>
        {
            var body = $$"""{"name":"p{{i}}","sql":"select {{i}}"}""";
            var request = RawHttp.Request("POST", $"/api/workspaces/{slug}/procedures", api.ServerAddress,
                [("Authorization", $"Bearer {token}"), (IdempotentRequests.HeaderName, key)], body);
            await RawHttp.SendAndDropAsync(api.ServerAddress, request, TimeSpan.FromMilliseconds(random.Next(0, 60)));
        }));

        // Let the server finish (or abandon) whatever it was doing for the dropped connections.
        await IdempotencyTests.WaitUntilSettledAsync(api, "SELECT count(*) FROM stored_procedures");
        var before = await api.ColumnAsync(
            "SELECT p.name || '=' || p.id FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = '" + slug + "'");
        // A crash cannot separate a write from its key: every committed write has its key, and no key lacks its write.
        Assert.Equal(before.Count, await api.ScalarAsync<long>(
            "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'drop-%' AND path = @p", ("p", $"/api/workspaces/{slug}/procedures")));

        var replays = 0;
        for (var i = 0; i < writers; i++)
        {
            var retry = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures")
            {
                Content = RawJson.Content($$"""{"name":"p{{i}}","sql":"select {{i}}"}"""),
            };
            retry.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, keys[i]);
            var response = await client.SendAsync(retry);
            var id = (await HttpAssert.ReadAsync<ProcedureDraft>(response, HttpStatusCode.Created)).Id;
            var existed = before.Contains($"p{i}={id}");
            // Replayed exactly when the dropped attempt had committed: the client learns its write happened, and its id.
            Assert.Equal(existed, response.Headers.Contains(IdempotentRequests.ReplayedHeader));
            if (existed) replays++;
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{replays} of {writers} dropped requests had committed; their retries were replays.");
        Assert.Equal(writers, await api.ScalarAsync<long>(
            "SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));
    }

    [Fact]
    public async Task A_backend_killed_inside_the_transaction_loses_the_write_and_its_key_together_and_the_retry_writes_once()
    {
        var (client, _, slug) = await ArrangeAsync();
        using var _ = client;
        var key = Guid.NewGuid().ToString();
        const string body = """{"name":"killed","sql":"select 1"}""";
        HttpRequestMessage Request()
        {
            var request = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures")
            {
                Content = RawJson.Content(body),
            };
            request.Headers.TryAddWithoutValidation(IdempotentRequests.HeaderName, key);
            return request;
        }

        await using (var blocker = await api.OpenConnectionAsync())
        {
            await using var transaction = await blocker.BeginTransactionAsync();
            await new NpgsqlCommand("LOCK TABLE stored_procedures IN EXCLUSIVE MODE", blocker, transaction).ExecuteNonQueryAsync();

            using var dropped = new CancellationTokenSource();
            var attempt = client.SendAsync(Request(), dropped.Token);
            await IdempotencyTests.WaitForBlockedBackendAsync(api);
            // The API's backend dies inside the request's transaction, and the client gives up on the answer.
            Assert.Equal(1L, await api.ScalarAsync<long>("""
                SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()) AS killed
                """));
            await dropped.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => attempt);
            await transaction.RollbackAsync();
        }

        await IdempotencyTests.WaitUntilSettledAsync(api, "SELECT count(*) FROM stored_procedures");
        var rows = await api.ScalarAsync<long>(
            "SELECT count(*) FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug));
        var keys = await api.ScalarAsync<long>("SELECT count(*) FROM idempotency_keys WHERE key = @k", ("k", key));
        Assert.Equal(rows, keys); // together or not at all

        var retry = await client.SendAsync(Request());
        var created = await HttpAssert.ReadAsync<ProcedureDraft>(retry, HttpStatusCode.Created);
        Assert.Equal(rows == 1, retry.Headers.Contains(IdempotentRequests.ReplayedHeader));
        Assert.Equal(created.Id, await api.ScalarAsync<Guid>(
            "SELECT p.id FROM stored_procedures p JOIN workspaces w ON w.id = p.workspace_id WHERE w.slug = @s", ("s", slug)));
        Assert.Equal(1L, await api.ScalarAsync<long>("SELECT count(*) FROM idempotency_keys WHERE key = @k", ("k", key)));
    }
}
