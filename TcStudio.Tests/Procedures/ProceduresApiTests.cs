using System.Net;
using System.Net.Http.Json;
using System.Text;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Infrastructure;
using static TcStudio.Tests.Procedures.ProcedureCalls;

namespace TcStudio.Tests.Procedures;

/// <summary>Stored-procedure drafts: CRUD with ETags, case-insensitive names, full-text search, bad input, activity.</summary>
public sealed class ProceduresApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private Task<long> ActivitiesAsync(string slug, string action) => api.ScalarAsync<long>(
        "SELECT count(*) FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = @s AND a.action = @a", ("s", slug),
        ("a", action));

    [Fact]
    public async Task A_draft_is_created_read_updated_with_its_etag_and_a_stale_etag_is_412()
    {
        using var user = await api.UserAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(user, "drafts")).Slug;

        var created = await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "dbo.GetOrders", sql = "CREATE PROCEDURE dbo.GetOrders AS SELECT 1;" });
        var body = await HttpAssert.ReadAsync<ProcedureDraft>(created, HttpStatusCode.Created);
        Assert.Equal($"/api/workspaces/{slug}/procedures/dbo.GetOrders", created.Headers.Location?.ToString());
        Assert.Equal("draft", body.Status);
        var etag = created.Headers.ETag!;

        // Names are case-insensitive on the way in and on lookup.
        var fetched = await user.GetAsync($"/api/workspaces/{slug}/procedures/DBO.getorders");
        var fetchedBody = await HttpAssert.ReadAsync<ProcedureDetails>(fetched);
        Assert.Equal(etag, fetched.Headers.ETag);
        Assert.Equal("dbo.GetOrders", fetchedBody.Name);
        Assert.Empty(fetchedBody.Environments);

        var update = new HttpRequestMessage(HttpMethod.Put, $"/api/workspaces/{slug}/procedures/dbo.GetOrders")
        {
            Content = JsonContent.Create(new { sql = "CREATE PROCEDURE dbo.GetOrders AS SELECT 2;" }),
        };
        update.Headers.IfMatch.Add(etag);
        var updated = await user.SendAsync(update);
        var updatedBody = await HttpAssert.ReadAsync<ProcedureDraft>(updated);
        Assert.NotEqual(etag, updated.Headers.ETag);
        Assert.Contains("SELECT 2", updatedBody.Sql);

        var stale = new HttpRequestMessage(HttpMethod.Put, $"/api/workspaces/{slug}/procedures/dbo.GetOrders")
        {
            Content = JsonContent.Create(new { sql = "CREATE PROCEDURE dbo.GetOrders AS SELECT 3;" }),
        };
        stale.Headers.IfMatch.Add(etag);
        await HttpAssert.ProblemAsync(await user.SendAsync(stale), HttpStatusCode.PreconditionFailed);
        Assert.Contains("SELECT 2", await api.ScalarAsync<string>("SELECT sql_draft FROM stored_procedures WHERE name = 'dbo.GetOrders'"));

        var duplicate = await HttpAssert.ProblemAsync(await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "DBO.GETORDERS", sql = "x" }), HttpStatusCode.Conflict);
        Assert.Equal("name", duplicate.GetProperty("field").GetString());

        var staleDelete = new HttpRequestMessage(HttpMethod.Delete, $"/api/workspaces/{slug}/procedures/dbo.GetOrders");
        staleDelete.Headers.IfMatch.Add(etag);
        await HttpAssert.ProblemAsync(await user.SendAsync(staleDelete), HttpStatusCode.PreconditionFailed);
        Assert.Equal(HttpStatusCode.NoContent, (await user.DeleteAsync($"/api/workspaces/{slug}/procedures/dbo.getorders")).StatusCode);
        await HttpAssert.ProblemAsync(await user.GetAsync($"/api/workspaces/{slug}/procedures/dbo.GetOrders"), HttpStatusCode.NotFound);

        Assert.Equal(1L, await ActivitiesAsync(slug, "procedure.created"));
        Assert.Equal(1L, await ActivitiesAsync(slug, "procedure.updated"));
        Assert.Equal(1L, await ActivitiesAsync(slug, "procedure.deleted"));
    }

    [Fact]
    public async Task Search_uses_the_full_text_index_and_status_filters_and_pages()
    {
        using var user = await api.UserAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(user, "search")).Slug;
        await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "monthly_revenue", sql = "SELECT sum(amount) FROM invoices" });
        await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "list_customers", sql = "SELECT * FROM customers" });
        await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "late_invoices", sql = "SELECT * FROM invoices WHERE due < now()" });
        await api.ExecuteAsync($"""
            UPDATE stored_procedures SET status = 'published', sql_published = sql_draft, published_at = now()
            WHERE name = 'list_customers' AND workspace_id = (SELECT id FROM workspaces WHERE slug = '{slug}')
            """);

        var invoices = await ListAsync(user, slug, "search=invoices");
        Assert.Equal(["late_invoices", "monthly_revenue"], invoices.Items.Select(i => i.Name).Order());
        var published = await ListAsync(user, slug, "status=published");
        Assert.Equal("list_customers", Assert.Single(published.Items).Name);
        var odd = await ListAsync(user, slug, "search=" + Uri.EscapeDataString("\"unclosed -( or &&"));
        Assert.Equal(0, odd.TotalCount);

        var page = await ListAsync(user, slug, "page=2&pageSize=2");
        Assert.Equal(3, page.TotalCount);
        Assert.Equal("monthly_revenue", Assert.Single(page.Items).Name);

        Assert.Contains("ix_stored_procedures_workspace_id_search_vector", await api.ScalarAsync<string>($"""
            SELECT string_agg(indexname, ',') FROM pg_indexes WHERE tablename = 'stored_procedures'
            """));
        await HttpAssert.ValidationProblemAsync(await user.GetAsync($"/api/workspaces/{slug}/procedures?status=gone"), "status");
    }

    [Fact]
    public async Task Listing_issues_the_same_number_of_commands_whatever_the_page_size()
    {
        using var user = await api.UserAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(user, "nplus-procs")).Slug;
        for (var i = 0; i < 6; i++) await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = $"p{i}", sql = "select 1" });
        await user.GetAsync($"/api/workspaces/{slug}/procedures?search=select");

        using var counter = new DatabaseCommandCounter(api.DatabaseName, requestsOnly: true);
        await ListAsync(user, slug, "pageSize=1&search=select");
        var small = counter.Commands.Count;
        counter.Reset();
        await ListAsync(user, slug, "pageSize=200&search=select");
        Assert.Equal(small, counter.Commands.Count);
        Assert.InRange(small, 1, 3);
    }

    [Fact]
    public async Task A_write_sends_no_savepoints_and_a_failed_one_leaves_the_next_request_unharmed()
    {
        using var user = await api.UserAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(user, "roundtrips")).Slug;
        await user.GetAsync($"/api/workspaces/{slug}"); // the session check is cached from here on

        using var counter = new DatabaseCommandCounter(api.DatabaseName, requestsOnly: true);
        var created = await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "counted", sql = "select 1" });
        await HttpAssert.ReadAsync<ProcedureDraft>(created, HttpStatusCode.Created);
        var update = new HttpRequestMessage(HttpMethod.Put, $"/api/workspaces/{slug}/procedures/counted")
        {
            Content = JsonContent.Create(new { sql = "select 2" }),
        };
        update.Headers.IfMatch.Add(created.Headers.ETag!);
        await HttpAssert.ReadAsync<ProcedureDraft>(await user.SendAsync(update));
        var commands = counter.Commands;
        TestContext.Current.TestOutputHelper?.WriteLine(string.Join("\n---\n", commands));

        // EF's automatic savepoint around each save (SAVEPOINT, then RELEASE) would be two more round trips per write:
        // the request's transaction is rolled back whole on any failure instead.
        Assert.DoesNotContain(commands, c => c.Contains("SAVEPOINT", StringComparison.OrdinalIgnoreCase));
        // Nor a settings statement alone: the access check's batch enters the workspace in the write's transaction, so
        // create is the access check and the two inserts, update the access check, the find and the update.
        Assert.DoesNotContain(commands, c => c.StartsWith(TcStudio.DatabaseTelemetry.SqlOperationKind.SettingsPrefixMarker, StringComparison.Ordinal)
            && !c.Contains(';'));
        Assert.Equal(5, commands.Count);

        // A save that fails (the name is taken) fails its request only: nothing half-done, and the next write works.
        await HttpAssert.ProblemAsync(await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "COUNTED", sql = "x" }),
            HttpStatusCode.Conflict);
        await HttpAssert.ReadAsync<ProcedureDraft>(await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "after", sql = "select 3" }), HttpStatusCode.Created);
        Assert.Equal(1, await ActivitiesAsync(slug, "procedure.updated"));
        Assert.Equal(2, await ActivitiesAsync(slug, "procedure.created"));
    }

    [Fact]
    public async Task The_direct_reads_and_the_write_access_check_stay_in_the_callers_workspace_whatever_the_payload()
    {
        using var alice = await api.NewUserClientAsync("direct-alice");
        using var carol = await api.NewUserClientAsync("direct-carol");
        using var mallory = await api.NewUserClientAsync("direct-mallory");
        var aliceSlug = (await ApiFixture.NewWorkspaceAsync(alice, "direct-alice")).Slug;
        var (carolSlug, carolId) = await ApiFixture.NewWorkspaceAsync(carol, "direct-carol");
        var mallorySlug = (await ApiFixture.NewWorkspaceAsync(mallory, "direct-mallory")).Slug;
        await api.AddMemberByHandAsync(carolSlug, "direct-mallory", "Member");
        await HttpAssert.ReadAsync<ProcedureDraft>(await alice.PostAsJsonAsync($"/api/workspaces/{aliceSlug}/procedures",
            new { name = "secret_payroll", sql = "select 'payroll secret'" }), HttpStatusCode.Created);

        // Search payloads in her own workspace find nothing of anyone else's and break nothing.
        foreach (var term in new[] { "secret_payroll", "payroll secret", "' OR 1=1 --", "x'); DROP TABLE stored_procedures; --",
            "$1 $2", "Ωmega 🚀 \"quoted\"", "payroll | secret & !x", new string('p', ProceduresApi.MaxSearchLength) })
        {
            var page = await ListAsync(mallory, mallorySlug, "search=" + Uri.EscapeDataString(term));
            Assert.Empty(page.Items);
            Assert.Equal(0, page.TotalCount);
        }
        await HttpAssert.ValidationProblemAsync(await mallory.GetAsync($"/api/workspaces/{mallorySlug}/procedures?search="
            + new string('p', ProceduresApi.MaxSearchLength + 1)), "search");
        await HttpAssert.ValidationProblemAsync(await mallory.GetAsync($"/api/workspaces/{mallorySlug}/procedures?pageSize=1000000"), "pageSize");
        await HttpAssert.ValidationProblemAsync(await mallory.GetAsync($"/api/workspaces/{mallorySlug}/activities?cursor=%27%3B--"), "cursor");

        // Alice's workspace does not exist for her, on every direct read and on a write (nothing written).
        foreach (var path in new[] { "", "/procedures", "/procedures?search=payroll", "/activities" })
        {
            await HttpAssert.ProblemAsync(await mallory.GetAsync($"/api/workspaces/{aliceSlug}{path}"), HttpStatusCode.NotFound);
        }
        await HttpAssert.ProblemAsync(await mallory.PostAsJsonAsync($"/api/workspaces/{aliceSlug}/procedures",
            new { name = "planted", sql = "select 1" }), HttpStatusCode.NotFound);
        Assert.Equal(0L, await api.ScalarAsync<long>("SELECT count(*) FROM stored_procedures WHERE name = 'planted'"));

        // As a Member of Carol's, her write lands in Carol's workspace (the one the access check entered) and nowhere else.
        await HttpAssert.ReadAsync<ProcedureDraft>(await mallory.PostAsJsonAsync($"/api/workspaces/{carolSlug}/procedures",
            new { name = "from_member", sql = "select 'ünïcödé; --'" }), HttpStatusCode.Created);
        Assert.Equal(carolId, await api.ScalarAsync<Guid>("SELECT workspace_id FROM stored_procedures WHERE name = 'from_member'"));
        Assert.Empty((await ListAsync(mallory, carolSlug, "search=payroll")).Items);
    }

    public static TheoryData<string, string> BadBodies => new()
    {
        { """{"name":"1bad","sql":"x"}""", "name" },
        { """{"name":"a.b.c","sql":"x"}""", "name" },
        { """{"name":"has space","sql":"x"}""", "name" },
        { $$"""{"name":"{{new string('n', 129)}}","sql":"x"}""", "name" },
        { """{"name":"ok"}""", "$" },
        { """{"name":"ok","sql":""}""", "sql" },
        { """{"name":"ok","sql":"a\u0000b"}""", "sql" },
        { """{"name":"ok","sql":"x","extra":1}""", "extra" },
        { """{"name":"ok","sql":5}""", "sql" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Bad_drafts_are_400_naming_the_field_and_write_nothing(string body, string field)
    {
        using var user = await api.UserAsync();
        var before = await api.ScalarAsync<long>("SELECT count(*) FROM stored_procedures");
        var response = await user.PostAsync("/api/workspaces/twsbp/procedures", new StringContent(body, Encoding.UTF8, "application/json"));
        var problem = await HttpAssert.ProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), problem.ToString());
        Assert.Equal(before, await api.ScalarAsync<long>("SELECT count(*) FROM stored_procedures"));
    }

    [Fact]
    public async Task Viewers_read_but_do_not_write_and_non_members_see_nothing()
    {
        using var owner = await api.NewUserClientAsync("procs-owner");
        using var viewer = await api.NewUserClientAsync("procs-viewer");
        using var outsider = await api.NewUserClientAsync("procs-outsider");
        var slug = (await ApiFixture.NewWorkspaceAsync(owner, "perm-procs")).Slug;
        await owner.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "visible", sql = "select 1" });
        await api.AddMemberByHandAsync(slug, "procs-viewer", "Viewer");

        await DetailsAsync(viewer, slug, "visible");
        await HttpAssert.ProblemAsync(await viewer.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "nope", sql = "x" }),
            HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await viewer.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/visible", new { sql = "x" }),
            HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await viewer.PostAsync($"/api/workspaces/{slug}/procedures/visible/publish?env=dev", null),
            HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await outsider.GetAsync($"/api/workspaces/{slug}/procedures"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await owner.GetAsync($"/api/workspaces/{slug}/procedures/missing"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await owner.GetAsync($"/api/workspaces/{slug}/procedures/not%20a%20name"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_tsql_draft_is_validated_statically_without_any_database()
    {
        using var user = await api.UserAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(user, "tsql-static")).Slug;
        await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "dbo.Report", sql = "CREATE PROCEDURE dbo.Report AS\nBEGIN\n  SELECT 1;\n  EXEC xp_cmdshell 'dir';\nEND" });
        await user.PostAsJsonAsync($"/api/workspaces/{slug}/procedures",
            new { name = "dbo.Fine", sql = "CREATE PROCEDURE dbo.Fine @Id int AS SELECT @Id AS Id;" });

        var refused = await ValidateAsync(user, slug, "dbo.Report", "dialect=tsql");
        Assert.False(refused.Valid);
        Assert.Equal("tsql", refused.Dialect);
        var error = Assert.Single(refused.Errors);
        Assert.Equal(4, error.Line);
        Assert.Contains("xp_cmdshell", error.Message);

        var fine = await ValidateAsync(user, slug, "dbo.Fine", "dialect=tsql");
        Assert.True(fine.Valid);
        Assert.Empty(fine.Errors);
    }
}
