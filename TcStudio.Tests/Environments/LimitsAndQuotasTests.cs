using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Environments;

/// <summary>Small limits and quotas, so each can be reached by a test in seconds.</summary>
public sealed class LimitsFixture(PostgresServer server) : WorkspaceApiFixture(server)
{
    public const int WorkspacesPerUser = 2;
    public const int EnvironmentsPerWorkspace = 2;
    public const int MaxResultBytes = 1024 * 1024;
    public const int RoleConnections = 7;

    protected override IEnumerable<KeyValuePair<string, string?>> ExtraSettings =>
    [
        new("Quotas:WorkspacesPerUser", WorkspacesPerUser.ToString()),
        new("Quotas:EnvironmentsPerWorkspace", EnvironmentsPerWorkspace.ToString()),
        new("Workspaces:MaxResultBytes", MaxResultBytes.ToString()),
        new("Workspaces:Limits:ConcurrentExecutions", "1"),
        new("Workspaces:Limits:Connections", RoleConnections.ToString()),
        new("Workspaces:MaxExecuteTimeout", "00:02:00"),
    ];
}

/// <summary>
/// Issue 11's reproductions, as a new user would try them: results without a byte cap, roles without limits,
/// unlimited workspaces and environments, a publish that deploys what nobody reviewed, production guessed from a name.
/// </summary>
public sealed class LimitsAndQuotasTests(LimitsFixture api) : IClassFixture<LimitsFixture>
{
    private static Task<HttpResponseMessage> ExecuteAsync(HttpClient client, string slug, string name, object body, string env = "dev") =>
        client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/{name}/execute?env={env}", body);

    private static async Task<JsonElement> PublishAsync(HttpClient client, string slug, string name, string env = "dev") =>
        await HttpAssert.JsonAsync(await client.PostAsync($"/api/workspaces/{slug}/procedures/{name}/publish?env={env}", null));

    /// <summary>A new user with <paramref name="role"/> in the workspace.</summary>
    private async Task<HttpClient> MemberAsync(string slug, string role)
    {
        var username = $"{role.ToLowerInvariant()}-{Guid.NewGuid():N}"[..20];
        var client = await api.NewUserClientAsync(username);
        await api.ExecuteAsync($"""
            INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
            SELECT w.id, u.id, '{role}', now() FROM workspaces w, users u WHERE w.slug = '{slug}' AND u.username = '{username}'
            """);
        return client;
    }

    [Fact]
    public async Task Publish_with_If_Match_deploys_the_reviewed_draft_or_nothing_and_records_its_checksum()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "reviewed");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "greeting", "CREATE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'reviewed' $$;");
        var read = await admin.GetAsync($"/api/workspaces/{slug}/procedures/greeting");
        var reviewedETag = read.Headers.ETag!.Tag;

        // A Member edits the draft after the Admin read it.
        using var member = await MemberAsync(slug, "Member");
        await HttpAssert.JsonAsync(await member.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/greeting",
            new { sql = "CREATE OR REPLACE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'unreviewed' $$;" }));

        var stale = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures/greeting/publish?env=dev");
        stale.Headers.IfMatch.Add(new EntityTagHeaderValue(reviewedETag));
        await HttpAssert.ProblemAsync(await admin.SendAsync(stale), HttpStatusCode.PreconditionFailed);
        var details = await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/procedures/greeting"));
        Assert.Equal("not_deployed", details.GetProperty("environments")[0].GetProperty("state").GetString());
        Assert.Equal("draft", details.GetProperty("status").GetString());

        // Reviewed again: the current ETag publishes exactly that text, and the checksum is recorded with the draft.
        var current = await admin.GetAsync($"/api/workspaces/{slug}/procedures/greeting");
        var publish = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures/greeting/publish?env=dev");
        publish.Headers.IfMatch.Add(new EntityTagHeaderValue(current.Headers.ETag!.Tag));
        var published = await HttpAssert.JsonAsync(await admin.SendAsync(publish));
        var after = await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/procedures/greeting"));
        Assert.Equal(published.GetProperty("checksum").GetString(), after.GetProperty("publishedChecksum").GetString());
        Assert.Equal(published.GetProperty("checksum").GetString(), after.GetProperty("environments")[0].GetProperty("checksum").GetString());
        var result = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "greeting", new { }));
        Assert.Equal("unreviewed", result.GetProperty("resultSets")[0].GetProperty("rows")[0][0].GetString());

        // Without If-Match it publishes the current draft, as before.
        await PublishAsync(admin, slug, "greeting");
    }

    [Fact]
    public async Task Production_is_the_environments_attribute_not_a_guess_from_its_name()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "prod-attr", environment: "prod");
        var created = await HttpAssert.JsonAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "prd", server = "local", databaseName = api.NewDatabaseName("prd"), isProduction = true }), HttpStatusCode.Created);
        Assert.True(created.GetProperty("isProduction").GetBoolean());
        Assert.False((await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/environments/prod"))).GetProperty("isProduction").GetBoolean());
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await PublishAsync(admin, slug, "one", env: "prd");
        await PublishAsync(admin, slug, "one", env: "prod");

        using var member = await MemberAsync(slug, "Member");
        var refused = await HttpAssert.ProblemAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prd"), HttpStatusCode.Forbidden);
        Assert.Contains("production", refused.GetProperty("detail").GetString());
        await HttpAssert.JsonAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prod"));

        // Those who manage environments change it; a Member may not.
        await HttpAssert.ProblemAsync(await member.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/prd", new { isProduction = false }),
            HttpStatusCode.Forbidden);
        var patched = await HttpAssert.JsonAsync(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/prod", new { isProduction = true }));
        Assert.True(patched.GetProperty("isProduction").GetBoolean());
        await HttpAssert.ProblemAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prod"), HttpStatusCode.Forbidden);
        await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "one", new { }, env: "prod"));
        await HttpAssert.ProblemAsync(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/nope", new { isProduction = true }),
            HttpStatusCode.NotFound);
        Assert.Equal(1L, await api.ScalarAsync<long>(
            $"SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = '{slug}' AND a.action = 'environment.updated'"));
    }

    [Fact]
    public async Task A_user_owns_at_most_the_quota_of_workspaces_even_when_creating_in_parallel()
    {
        using var user = await api.NewUserClientAsync($"quota-{Guid.NewGuid():N}"[..20]);
        var responses = await Task.WhenAll(Enumerable.Range(0, 5).Select(i =>
            user.PostAsJsonAsync("/api/workspaces", new { name = $"q{i}", slug = WorkspaceApiFixture.NewSlug("quota") })));
        Assert.Equal(LimitsFixture.WorkspacesPerUser, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        var overQuota = responses.First(r => r.StatusCode != HttpStatusCode.Created);
        var problem = await HttpAssert.ProblemAsync(overQuota, HttpStatusCode.Conflict);
        Assert.Contains("Quotas:WorkspacesPerUser", problem.GetProperty("detail").GetString());

        // Deleting one frees its place; a system Admin has no quota.
        var owned = await HttpAssert.JsonAsync(await user.GetAsync("/api/workspaces"));
        var first = owned.GetProperty("items")[0].GetProperty("slug").GetString();
        Assert.Equal(HttpStatusCode.NoContent, (await user.DeleteAsync($"/api/workspaces/{first}")).StatusCode);
        await HttpAssert.JsonAsync(await user.PostAsJsonAsync("/api/workspaces", new { name = "again", slug = WorkspaceApiFixture.NewSlug("quota") }),
            HttpStatusCode.Created);
        using var admin = await api.AdminAsync();
        for (var i = 0; i <= LimitsFixture.WorkspacesPerUser; i++)
        {
            await HttpAssert.JsonAsync(await admin.PostAsJsonAsync("/api/workspaces", new { name = "admin", slug = WorkspaceApiFixture.NewSlug("quota-admin") }),
                HttpStatusCode.Created);
        }
    }

    [Fact]
    public async Task A_workspace_has_at_most_the_quota_of_environments()
    {
        using var user = await api.NewUserClientAsync($"envq-{Guid.NewGuid():N}"[..20]);
        var slug = WorkspaceApiFixture.NewSlug("envq");
        await HttpAssert.JsonAsync(await user.PostAsJsonAsync("/api/workspaces", new { name = "envq", slug }), HttpStatusCode.Created);
        for (var i = 0; i < LimitsFixture.EnvironmentsPerWorkspace; i++)
        {
            await HttpAssert.JsonAsync(await user.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
                new { name = $"e{i}", server = "local", databaseName = api.NewDatabaseName("envq") }), HttpStatusCode.Created);
        }
        var database = api.NewDatabaseName("envq");
        var problem = await HttpAssert.ProblemAsync(await user.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "one-more", server = "local", databaseName = database }), HttpStatusCode.Conflict);
        Assert.Contains("Quotas:EnvironmentsPerWorkspace", problem.GetProperty("detail").GetString());
        Assert.Equal(0L, await api.ScalarAsync<long>($"SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
    }

    [Fact]
    public async Task A_result_past_the_byte_cap_is_cut_short_and_says_why()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "bytes");
        // Three rows of 600 kB against a 1 MiB cap (the three rows of 20 MB against 16 MiB, scaled down).
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "big",
            "CREATE FUNCTION big() RETURNS TABLE (n int, payload text) LANGUAGE sql AS $$ SELECT g, repeat('x', 600000) FROM generate_series(1, 3) g $$;");
        await PublishAsync(admin, slug, "big");

        var response = await ExecuteAsync(admin, slug, "big", new { maxRows = 3 });
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(body.Length < LimitsFixture.MaxResultBytes, $"{body.Length} bytes sent");
        var result = JsonDocument.Parse(body).RootElement;
        Assert.True(result.GetProperty("truncated").GetBoolean());
        Assert.Equal("bytes", result.GetProperty("truncatedReason").GetString());
        Assert.Equal(1, result.GetProperty("resultSets")[0].GetProperty("rows").GetArrayLength());

        // The row cap still says "rows"; a complete result says nothing.
        var byRows = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "big", new { maxRows = 1 }));
        Assert.Equal("rows", byRows.GetProperty("truncatedReason").GetString());
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "small", "CREATE FUNCTION small() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await PublishAsync(admin, slug, "small");
        var complete = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "small", new { }));
        Assert.False(complete.GetProperty("truncated").GetBoolean());
        Assert.Equal(JsonValueKind.Null, complete.GetProperty("truncatedReason").ValueKind);

        // Nothing of it is left running on the server.
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%\"big\"()%' AND state = 'active' AND pid <> pg_backend_pid()"));
    }

    [Fact]
    public async Task Numerics_read_in_one_pass_keep_their_exact_value()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "numerics");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "numbers",
            "CREATE FUNCTION numbers() RETURNS TABLE (a numeric, b numeric, c numeric, d numeric, e numeric, f numeric, g numeric) LANGUAGE sql AS $$ "
            + "SELECT 0.0005, -12.50, 0, 0.00000005, 123456789.123456789, -1e30::numeric * 1e10, 'NaN'::numeric $$;");
        await PublishAsync(admin, slug, "numbers");
        var row = (await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "numbers", new { }))).GetProperty("resultSets")[0].GetProperty("rows")[0];
        Assert.Equal(["0.0005", "-12.50", "0", "0.00000005", "123456789.123456789", "\"-10000000000000000000000000000000000000000\"", "\"NaN\""],
            row.EnumerateArray().Select(v => v.GetRawText()));
    }

    [Fact]
    public async Task Workspace_roles_carry_a_connection_limit_a_statement_timeout_a_temp_file_limit_and_work_mem()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "role-limits");
        var environment = await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/environments/dev"));
        var id = Guid.Parse(environment.GetProperty("id").GetString()!).ToString("N");
        foreach (var role in new[] { $"tcws_{id}_owner", $"tcws_{id}_exec" })
        {
            Assert.Equal(LimitsFixture.RoleConnections, await api.WorkspaceScalarAsync<int>("postgres", $"SELECT rolconnlimit FROM pg_roles WHERE rolname = '{role}'"));
        }

        // What an execution sees: the role's settings, and the request's timeout lowering the role's with SET LOCAL.
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "settings", """
            CREATE FUNCTION settings() RETURNS TABLE (statement_timeout text, temp_file_limit text, work_mem text) LANGUAGE sql AS $$
                SELECT current_setting('statement_timeout'), current_setting('temp_file_limit'), current_setting('work_mem')
            $$;
            """);
        await PublishAsync(admin, slug, "settings");
        var row = (await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "settings", new { timeoutSeconds = 5 })))
            .GetProperty("resultSets")[0].GetProperty("rows")[0];
        Assert.Equal(["5s", "1GB", "16MB"], row.EnumerateArray().Select(v => v.GetString()));
        await HttpAssert.ValidationProblemAsync(await ExecuteAsync(admin, slug, "settings", new { timeoutSeconds = 121 }), "timeoutSeconds");

        // A session of the role without the API's SET LOCAL still has the largest execute timeout (120 s).
        Assert.Contains("statement_timeout=120000ms", await api.WorkspaceScalarAsync<string>("postgres", $"""
            SELECT array_to_string(s.setconfig, ' ') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'tcws_{id}_exec'
            """));
    }

    [Fact]
    public async Task Executions_past_the_workspaces_concurrency_cap_get_429_with_Retry_After()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "concurrency");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "nap", "CREATE FUNCTION nap() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(3) $$;");
        await PublishAsync(admin, slug, "nap");

        var first = ExecuteAsync(admin, slug, "nap", new { });
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (await api.WorkspaceScalarAsync<long>(database,
                   "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%\"nap\"()%' AND state = 'active' AND pid <> pg_backend_pid()") == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the first execution never started");
            await Task.Delay(50);
        }
        var second = await ExecuteAsync(admin, slug, "nap", new { });
        await HttpAssert.ProblemAsync(second, HttpStatusCode.TooManyRequests);
        Assert.NotNull(second.Headers.RetryAfter?.Delta);

        await HttpAssert.JsonAsync(await first);
        await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "nap", new { }));
    }
}
