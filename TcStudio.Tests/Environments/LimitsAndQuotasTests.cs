using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Api.Environments;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Procedures;
using TcStudio.Api.Workspaces;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Procedures;
using TcStudio.WorkspaceDatabases;
using static TcStudio.Tests.Procedures.ProcedureCalls;

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
    [Fact]
    public async Task Publish_with_If_Match_deploys_the_reviewed_draft_or_nothing_and_records_its_checksum()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "reviewed");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "greeting",
            "CREATE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'reviewed' $$;");
        var read = await admin.GetAsync($"/api/workspaces/{slug}/procedures/greeting");
        var reviewedETag = read.Headers.ETag!.Tag;

        // A Member edits the draft after the Admin read it.
        using var member = await api.NewMemberClientAsync(slug, "Member");
        await HttpAssert.ReadAsync<ProcedureDraft>(await member.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/greeting",
            new { sql = "CREATE OR REPLACE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'unreviewed' $$;" }));

        var stale = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures/greeting/publish?env=dev");
        stale.Headers.IfMatch.Add(new EntityTagHeaderValue(reviewedETag));
        await HttpAssert.ProblemAsync(await admin.SendAsync(stale), HttpStatusCode.PreconditionFailed);
        var details = await DetailsAsync(admin, slug, "greeting");
        Assert.Equal("not_deployed", details.Environments[0].State);
        Assert.Equal("draft", details.Status);

        // Reviewed again: the current ETag publishes exactly that text, and the checksum is recorded with the draft.
        var current = await admin.GetAsync($"/api/workspaces/{slug}/procedures/greeting");
        var publish = new HttpRequestMessage(HttpMethod.Post, $"/api/workspaces/{slug}/procedures/greeting/publish?env=dev");
        publish.Headers.IfMatch.Add(new EntityTagHeaderValue(current.Headers.ETag!.Tag));
        var published = await HttpAssert.ReadAsync<PublishResponse>(await admin.SendAsync(publish));
        var after = await DetailsAsync(admin, slug, "greeting");
        Assert.Equal(published.Checksum, after.PublishedChecksum);
        Assert.Equal(published.Checksum, after.Environments[0].Checksum);
        var result = await ExecutedAsync(admin, slug, "greeting", new { });
        Assert.Equal("unreviewed", result.ResultSets[0].Cell(0, 0).GetString());

        // Without If-Match it publishes the current draft, as before.
        await PublishAsync(admin, slug, "greeting");
    }

    [Fact]
    public async Task Production_is_the_environments_attribute_not_a_guess_from_its_name()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "prod-attr", environment: "prod");
        var created = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "prd", server = "local", databaseName = api.NewDatabaseName("prd"), isProduction = true }), HttpStatusCode.Created);
        Assert.True(created.IsProduction);
        var prod = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.GetAsync($"/api/workspaces/{slug}/environments/prod"));
        Assert.False(prod.IsProduction);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await PublishAsync(admin, slug, "one", env: "prd");
        await PublishAsync(admin, slug, "one", env: "prod");

        using var member = await api.NewMemberClientAsync(slug, "Member");
        var refused = await HttpAssert.ProblemAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prd"), HttpStatusCode.Forbidden);
        Assert.Contains("production", refused.GetProperty("detail").GetString());
        await ExecutedAsync(member, slug, "one", new { }, env: "prod");

        // Those who manage environments change it; a Member may not.
        await HttpAssert.ProblemAsync(await member.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/prd", new { isProduction = false }),
            HttpStatusCode.Forbidden);
        var patched = await HttpAssert.ReadAsync<EnvironmentDetails>(
            await admin.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/prod", new { isProduction = true }));
        Assert.True(patched.IsProduction);
        await HttpAssert.ProblemAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prod"), HttpStatusCode.Forbidden);
        await ExecutedAsync(admin, slug, "one", new { }, env: "prod");
        await HttpAssert.ProblemAsync(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/nope", new { isProduction = true }),
            HttpStatusCode.NotFound);
        Assert.Equal(1L, await api.ScalarAsync<long>(
            "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id "
            + $"WHERE w.slug = '{slug}' AND a.action = 'environment.updated'"));
    }

    [Fact]
    public async Task A_user_owns_at_most_the_quota_of_workspaces_even_when_creating_in_parallel()
    {
        using var user = await api.NewUserClientAsync($"quota-{Guid.NewGuid():N}"[..20]);
        var responses = await Task.WhenAll(Enumerable.Range(0, 5).Select(i =>
            user.PostAsJsonAsync("/api/workspaces", new { name = $"q{i}", slug = ApiFixture.NewSlug("quota") })));
        Assert.Equal(LimitsFixture.WorkspacesPerUser, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        var overQuota = responses.First(r => r.StatusCode != HttpStatusCode.Created);
        var problem = await HttpAssert.ProblemAsync(overQuota, HttpStatusCode.Conflict);
        Assert.Contains("Quotas:WorkspacesPerUser", problem.GetProperty("detail").GetString());

        // Deleting one frees its place; a system Admin has no quota.
        var owned = await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(await user.GetAsync("/api/workspaces"));
        Assert.Equal(HttpStatusCode.NoContent, (await user.DeleteAsync($"/api/workspaces/{owned.Items[0].Slug}")).StatusCode);
        await ApiFixture.NewWorkspaceAsync(user, "quota", "again");
        using var admin = await api.AdminAsync();
        for (var i = 0; i <= LimitsFixture.WorkspacesPerUser; i++)
        {
            await ApiFixture.NewWorkspaceAsync(admin, "quota-admin", "admin");
        }
    }

    [Fact]
    public async Task A_workspace_has_at_most_the_quota_of_environments()
    {
        using var user = await api.NewUserClientAsync($"envq-{Guid.NewGuid():N}"[..20]);
        var slug = (await ApiFixture.NewWorkspaceAsync(user, "envq")).Slug;
        for (var i = 0; i < LimitsFixture.EnvironmentsPerWorkspace; i++)
        {
            await HttpAssert.ReadAsync<EnvironmentDetails>(await user.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
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
            "CREATE FUNCTION big() RETURNS TABLE (n int, payload text) LANGUAGE sql AS $$ "
            + "SELECT g, repeat('x', 600000) FROM generate_series(1, 3) g $$;");
        await PublishAsync(admin, slug, "big");

        var response = await ExecuteAsync(admin, slug, "big", new { maxRows = 3 });
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(body.Length < LimitsFixture.MaxResultBytes, $"{body.Length} bytes sent");
        var result = JsonSerializer.Deserialize<ExecutionResult>(body, HttpAssert.ResponseJson)!;
        Assert.True(result.Truncated);
        Assert.Equal("bytes", result.TruncatedReason);
        Assert.Single(result.ResultSets[0].Rows);

        // The row cap still says "rows"; a complete result says nothing.
        var byRows = await ExecutedAsync(admin, slug, "big", new { maxRows = 1 });
        Assert.Equal("rows", byRows.TruncatedReason);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "small", "CREATE FUNCTION small() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await PublishAsync(admin, slug, "small");
        var complete = await ExecutedAsync(admin, slug, "small", new { });
        Assert.False(complete.Truncated);
        Assert.Null(complete.TruncatedReason);

        // Nothing of it is left running on the server.
        Assert.Equal(0L, await api.RunningStatementsAsync(database, "\"big\"()"));
    }

    [Fact]
    public async Task Numerics_read_in_one_pass_keep_their_exact_value()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "numerics");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "numbers",
            "CREATE FUNCTION numbers() RETURNS TABLE (a numeric, b numeric, c numeric, d numeric, e numeric, f numeric, g numeric) "
            + "LANGUAGE sql AS $$ "
            + "SELECT 0.0005, -12.50, 0, 0.00000005, 123456789.123456789, -1e30::numeric * 1e10, 'NaN'::numeric $$;");
        await PublishAsync(admin, slug, "numbers");
        // The cells' JSON text is the point: numbers keep their digits, and what a double cannot hold is a string.
        var numbers = Assert.Single((await ExecutedAsync(admin, slug, "numbers", new { })).ResultSets);
        Assert.Equal(["0.0005", "-12.50", "0", "0.00000005", "123456789.123456789", "\"-10000000000000000000000000000000000000000\"", "\"NaN\""],
            Enumerable.Range(0, 7).Select(column => numbers.Cell(0, column).GetRawText()));
    }

    [Fact]
    public async Task Workspace_roles_carry_a_connection_limit_a_statement_timeout_a_temp_file_limit_and_work_mem()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "role-limits");
        var environment = await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.GetAsync($"/api/workspaces/{slug}/environments/dev"));
        var id = environment.Id.ToString("N");
        foreach (var role in new[] { $"tcws_{id}_owner", $"tcws_{id}_exec" })
        {
            Assert.Equal(LimitsFixture.RoleConnections, await api.WorkspaceScalarAsync<int>("postgres",
                $"SELECT rolconnlimit FROM pg_roles WHERE rolname = '{role}'"));
        }

        // What an execution sees: the role's settings, and the request's timeout lowering the role's with SET LOCAL.
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "settings", """
            CREATE FUNCTION settings() RETURNS TABLE (statement_timeout text, temp_file_limit text, work_mem text) LANGUAGE sql AS $$
                SELECT current_setting('statement_timeout'), current_setting('temp_file_limit'), current_setting('work_mem')
            $$;
            """);
        await PublishAsync(admin, slug, "settings");
        var settings = (await ExecutedAsync(admin, slug, "settings", new { timeoutSeconds = 5 })).ResultSets[0];
        Assert.Equal(["5s", "1GB", "16MB"], Enumerable.Range(0, 3).Select(column => settings.Cell(0, column).GetString()));
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
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "nap",
            "CREATE FUNCTION nap() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(3) $$;");
        await PublishAsync(admin, slug, "nap");

        var first = ExecuteAsync(admin, slug, "nap", new { });
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (await api.RunningStatementsAsync(database, "\"nap\"()") == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the first execution never started");
            await Task.Delay(50);
        }
        var second = await ExecuteAsync(admin, slug, "nap", new { });
        await HttpAssert.ProblemAsync(second, HttpStatusCode.TooManyRequests);
        Assert.NotNull(second.Headers.RetryAfter?.Delta);

        await HttpAssert.ReadAsync<ExecutionResult>(await first);
        await ExecutedAsync(admin, slug, "nap", new { });
    }
}
