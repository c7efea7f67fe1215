using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Procedures;

/// <summary>Validate, publish and execute against PostgreSQL workspace databases created by the tests, end to end.</summary>
public sealed class PublishAndExecuteTests(WorkspaceApiFixture api) : IClassFixture<WorkspaceApiFixture>
{
    private const string Orders = """
        CREATE OR REPLACE FUNCTION report.orders_between(first_id integer, last_id integer DEFAULT 10)
        RETURNS TABLE (id integer, label text, amount numeric)
        LANGUAGE sql STABLE
        AS $$
            SELECT g, 'order ' || g, g * 1.5 FROM generate_series(first_id, last_id) AS g;
        $$;
        """;

    [Fact]
    public async Task A_function_returning_a_table_is_validated_published_and_executed_with_typed_parameters()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "pub-exec");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "report.orders_between", Orders);

        var validation = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/report.orders_between/validate?env=dev", null));
        Assert.True(validation.GetProperty("valid").GetBoolean(), validation.ToString());
        var statically = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/report.orders_between/validate?dialect=postgres", null));
        Assert.True(statically.GetProperty("valid").GetBoolean(), statically.ToString());

        var published = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/report.orders_between/publish?env=dev", null));
        Assert.Equal("dev", published.GetProperty("environment").GetString());

        var result = await HttpAssert.JsonAsync(await admin.PostAsJsonAsync(
            $"/api/workspaces/{slug}/procedures/report.orders_between/execute?env=dev", new { parameters = new { first_id = 3, last_id = "5" }, maxRows = 2 }));
        var set = Assert.Single(result.GetProperty("resultSets").EnumerateArray());
        Assert.Equal(["id", "label", "amount"], set.GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        Assert.Equal("integer", set.GetProperty("columns")[0].GetProperty("type").GetString());
        Assert.Equal(2, set.GetProperty("rows").GetArrayLength());
        Assert.Equal(3, set.GetProperty("rows")[0][0].GetInt32());
        Assert.Equal("order 3", set.GetProperty("rows")[0][1].GetString());
        Assert.True(result.GetProperty("truncated").GetBoolean());

        var details = await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/procedures/report.orders_between"));
        var dev = Assert.Single(details.GetProperty("environments").EnumerateArray());
        Assert.Equal("deployed", dev.GetProperty("state").GetString());
        Assert.True(dev.GetProperty("matchesDraft").GetBoolean());
        Assert.Equal("published", details.GetProperty("status").GetString());
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
    }

    private const string Summary = """
        CREATE PROCEDURE order_summary(IN customer text, INOUT total numeric, OUT line_count integer,
                                       INOUT lines refcursor DEFAULT NULL, INOUT notes refcursor DEFAULT NULL)
        LANGUAGE plpgsql
        AS $$
        BEGIN
            total := coalesce(total, 0) + 42.5;
            line_count := 3;
            OPEN lines FOR SELECT g AS line_no, customer || '-' || g AS item FROM generate_series(1, 3) AS g;
            OPEN notes FOR SELECT 'thanks, ' || customer AS note;
        END;
        $$;
        """;

    private const string Dashboards = """
        CREATE FUNCTION dashboards(top_n integer) RETURNS SETOF refcursor
        LANGUAGE plpgsql
        AS $$
        DECLARE
            a refcursor := 'first_set';
            b refcursor := 'second_set';
        BEGIN
            OPEN a FOR SELECT g AS n FROM generate_series(1, top_n) AS g;
            RETURN NEXT a;
            OPEN b FOR SELECT now()::date AS today, true AS ok;
            RETURN NEXT b;
        END;
        $$;
        """;

    private static async Task<JsonElement> PublishAsync(HttpClient client, string slug, string name, string env = "dev") =>
        await HttpAssert.JsonAsync(await client.PostAsync($"/api/workspaces/{slug}/procedures/{name}/publish?env={env}", null));

    private static Task<HttpResponseMessage> ExecuteAsync(HttpClient client, string slug, string name, object body, string env = "dev") =>
        client.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/{name}/execute?env={env}", body);

    [Fact]
    public async Task A_procedure_returns_output_parameters_and_one_result_set_per_refcursor()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "refcursors");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "order_summary", Summary);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dashboards", Dashboards);
        await PublishAsync(admin, slug, "order_summary");
        await PublishAsync(admin, slug, "dashboards");

        var result = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "order_summary", new { parameters = new { customer = "acme", total = 7.5 } }));
        Assert.Equal(50.0m, result.GetProperty("outputParameters").GetProperty("total").GetDecimal());
        Assert.Equal(3, result.GetProperty("outputParameters").GetProperty("line_count").GetInt32());
        var sets = result.GetProperty("resultSets").EnumerateArray().ToList();
        Assert.Equal(2, sets.Count);
        Assert.Equal(["line_no", "item"], sets[0].GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        Assert.Equal("acme-3", sets[0].GetProperty("rows")[2][1].GetString());
        Assert.Equal("thanks, acme", sets[1].GetProperty("rows")[0][0].GetString());
        Assert.False(result.GetProperty("truncated").GetBoolean());

        var functionSets = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "dashboards", new { parameters = new { top_n = 4 }, maxRows = 3 }));
        var both = functionSets.GetProperty("resultSets").EnumerateArray().ToList();
        Assert.Equal(2, both.Count);
        Assert.Equal(3, both[0].GetProperty("rows").GetArrayLength());
        Assert.Equal(0, both[1].GetProperty("rows").GetArrayLength()); // the row cap counts across result sets
        Assert.Equal("today", both[1].GetProperty("columns")[0].GetProperty("name").GetString());
        Assert.True(functionSets.GetProperty("truncated").GetBoolean());
    }

    [Fact]
    public async Task Parameters_are_typed_from_the_catalog_and_bad_values_are_400_naming_them()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "params");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "report.orders_between", Orders);
        await PublishAsync(admin, slug, "report.orders_between");
        var before = await api.ScalarAsync<long>("SELECT count(*) FROM activities WHERE action = 'procedure.executed'");

        var notANumber = await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = "three" } }), "parameters.first_id");
        Assert.Contains("integer", notANumber.ToString());
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 1, drop_table = "x" } }), "parameters.drop_table");
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { last_id = 4 } }), "parameters.first_id");
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 1 }, timeoutSeconds = 0 }), "timeoutSeconds");
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 1 }, maxRows = 0 }), "maxRows");

        // An injection attempt is just a (bad) value: parameters never become SQL text.
        await HttpAssert.ValidationProblemAsync(await ExecuteAsync(admin, slug, "report.orders_between",
            new { parameters = new { first_id = "1); DROP SCHEMA tcstudio CASCADE; --" } }), "parameters.first_id");

        var defaults = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 9 } }));
        Assert.Equal(2, defaults.GetProperty("resultSets")[0].GetProperty("rows").GetArrayLength()); // last_id defaults to 10

        var executed = await api.ColumnAsync("SELECT details::text FROM activities WHERE action = 'procedure.executed' ORDER BY created_at");
        Assert.True(executed.Count > before);
        Assert.All(executed, details => Assert.DoesNotContain("DROP SCHEMA", details));
        Assert.Contains(executed, details => details.Contains("\"success\": true") && details.Contains("\"environment\": \"dev\""));
        Assert.Contains(executed, details => details.Contains("\"success\": false"));
    }

    [Fact]
    public async Task Database_errors_are_422_with_the_number_and_timeouts_are_504()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "errors");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "fail_loudly", """
            CREATE FUNCTION fail_loudly(reason text) RETURNS integer LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'refused: %', reason USING ERRCODE = 'P0001';
            END;
            $$;
            """);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "slow", """
            CREATE PROCEDURE slow(seconds integer) LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_sleep(seconds);
            END;
            $$;
            """);
        await PublishAsync(admin, slug, "fail_loudly");
        await PublishAsync(admin, slug, "slow");

        var error = await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "fail_loudly", new { parameters = new { reason = "no stock" } }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Equal("P0001", error.GetProperty("number").GetString());
        Assert.Contains("refused: no stock", error.GetProperty("detail").GetString());
        Assert.Equal("dev", error.GetProperty("environment").GetString());

        var started = System.Diagnostics.Stopwatch.StartNew();
        var timeout = await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "slow", new { parameters = new { seconds = 30 }, timeoutSeconds = 1 }),
            HttpStatusCode.GatewayTimeout);
        Assert.InRange(started.Elapsed.TotalSeconds, 0.9, 10);
        Assert.Contains("timeout", timeout.GetProperty("detail").GetString());
        // A timeout is the statement's, not the environment's: it stays healthy.
        Assert.Equal("ready", (await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/environments/dev/status"))).GetProperty("status").GetString());
        Assert.Contains("\"outcome\": \"timed_out\"", await api.ScalarAsync<string>(
            "SELECT details::text FROM activities WHERE action = 'procedure.executed' AND details->>'name' = 'slow'"));
    }

    [Fact]
    public async Task A_client_that_disconnects_cancels_the_statement_on_the_server()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "cancel");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "nap", "CREATE FUNCTION nap() RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;");
        await PublishAsync(admin, slug, "nap");

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1.5));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            admin.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/nap/execute?env=dev", new { }, cts.Token));

        var deadline = DateTime.UtcNow.AddSeconds(10);
        long running;
        do
        {
            await Task.Delay(200);
            running = await api.WorkspaceScalarAsync<long>(database,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%nap()%' AND state = 'active' AND pid <> pg_backend_pid()");
        }
        while (running > 0 && DateTime.UtcNow < deadline);
        Assert.Equal(0L, running);
    }

    [Fact]
    public async Task Invalid_drafts_report_line_and_column_and_are_never_deployed()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "invalid");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "broken", """
            CREATE FUNCTION broken() RETURNS integer LANGUAGE plpgsql AS $$
            BEGIN
                RETURN (SELECT count(*) FROM;
            END;
            $$;
            """);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "two_things", "CREATE FUNCTION two_things() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\nCOPY (SELECT 1) TO PROGRAM 'id';");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "misnamed", "CREATE FUNCTION other_name() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "not_a_routine", "DROP SCHEMA tcstudio CASCADE");

        var broken = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate?env=dev", null));
        Assert.False(broken.GetProperty("valid").GetBoolean());
        var error = broken.GetProperty("errors")[0];
        Assert.Equal(3, error.GetProperty("line").GetInt32());
        Assert.StartsWith("42601:", error.GetProperty("message").GetString());

        var two = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/two_things/validate?dialect=postgres", null));
        Assert.Equal(2, two.GetProperty("errors")[0].GetProperty("line").GetInt32());
        var misnamed = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/misnamed/validate?env=dev", null));
        Assert.Contains("must match", misnamed.GetProperty("errors")[0].GetProperty("message").GetString());

        foreach (var name in new[] { "broken", "two_things", "misnamed", "not_a_routine" })
        {
            var refused = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/{name}/publish?env=dev", null),
                HttpStatusCode.UnprocessableEntity);
            Assert.True(refused.GetProperty("errors").GetArrayLength() > 0);
        }
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname IN ('broken', 'two_things', 'other_name')"));
        Assert.Equal("draft", await api.ScalarAsync<string>("SELECT status FROM stored_procedures WHERE name = 'broken'"));

        await HttpAssert.ValidationProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate", null), "env");
        await HttpAssert.ValidationProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate?dialect=cobol", null), "dialect");
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate?env=nowhere", null), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Republishing_replaces_the_routine_tracks_the_draft_and_delete_drops_it_everywhere()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "republish");
        await HttpAssert.JsonAsync(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "test", server = "local", databaseName = api.NewDatabaseName("republish_test"), create = true }), HttpStatusCode.Created);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "greet", "CREATE FUNCTION greet(who text) RETURNS text LANGUAGE sql AS $$ SELECT 'hello ' || who $$;");
        await PublishAsync(admin, slug, "greet");

        await HttpAssert.JsonAsync(await admin.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/greet",
            new { sql = "CREATE OR REPLACE FUNCTION greet(who text, punctuation text DEFAULT '!') RETURNS text LANGUAGE sql AS $$ SELECT 'hi ' || who || punctuation $$;" }));
        var details = await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/procedures/greet"));
        var states = details.GetProperty("environments").EnumerateArray().ToDictionary(e => e.GetProperty("environment").GetString()!);
        Assert.False(states["dev"].GetProperty("matchesDraft").GetBoolean());
        Assert.Equal("not_deployed", states["test"].GetProperty("state").GetString());

        await PublishAsync(admin, slug, "greet");
        var greeting = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "greet", new { parameters = new { who = "ana" } }));
        Assert.Equal("hi ana!", greeting.GetProperty("resultSets")[0].GetProperty("rows")[0][0].GetString());
        // One name, one routine: the old signature is gone, and its definition is kept for compensation.
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'greet'"));
        Assert.Contains("hello", await api.WorkspaceScalarAsync<string>(database,
            "SELECT previous_definition FROM tcstudio.procedure_deployments ORDER BY id DESC LIMIT 1"));

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}/procedures/greet")).StatusCode);
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'greet'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
        Assert.Contains("\"droppedFrom\": [\"dev\"]", await api.ScalarAsync<string>(
            "SELECT details::text FROM activities WHERE action = 'procedure.deleted' AND details->>'name' = 'greet'"));
    }

    [Fact]
    public async Task When_the_system_database_step_fails_the_deploy_is_undone_and_the_response_says_so()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "compensate");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "price", "CREATE FUNCTION price() RETURNS numeric LANGUAGE sql AS $$ SELECT 10.0 $$;");
        await PublishAsync(admin, slug, "price");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "fresh", "CREATE FUNCTION fresh() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; -- fail-the-system-step");

        // Make the system database refuse to record publishes whose SQL carries a marker.
        await api.ExecuteAsync("""
            CREATE OR REPLACE FUNCTION test_refuse_publish() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.sql_published LIKE '%fail-the-system-step%' THEN
                    RAISE EXCEPTION 'recording refused by the test' USING ERRCODE = 'P0001';
                END IF;
                RETURN NEW;
            END;
            $$;
            DROP TRIGGER IF EXISTS test_refuse_publish ON stored_procedures;
            CREATE TRIGGER test_refuse_publish BEFORE UPDATE ON stored_procedures FOR EACH ROW EXECUTE FUNCTION test_refuse_publish();
            """);
        try
        {
            await HttpAssert.JsonAsync(await admin.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/price",
                new { sql = "CREATE OR REPLACE FUNCTION price() RETURNS numeric LANGUAGE sql AS $$ SELECT 99.0 $$; -- fail-the-system-step" }));

            var replaced = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/price/publish?env=dev", null),
                HttpStatusCode.InternalServerError);
            Assert.Equal("system", replaced.GetProperty("failedSide").GetString());
            Assert.True(replaced.GetProperty("compensated").GetBoolean());
            Assert.Contains("previous definition was restored", replaced.GetProperty("detail").GetString());
            var price = await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "price", new { }));
            Assert.Equal(10.0m, price.GetProperty("resultSets")[0].GetProperty("rows")[0][0].GetDecimal());
            Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments WHERE procedure = 'price'"));

            var brandNew = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/fresh/publish?env=dev", null),
                HttpStatusCode.InternalServerError);
            Assert.Contains("new procedure was dropped", brandNew.GetProperty("detail").GetString());
            Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'fresh'"));
            Assert.Equal("draft", await api.ScalarAsync<string>("SELECT status FROM stored_procedures WHERE name = 'fresh'"));
        }
        finally
        {
            await api.ExecuteAsync("DROP TRIGGER IF EXISTS test_refuse_publish ON stored_procedures");
        }
    }

    [Fact]
    public async Task Concurrent_publishes_of_one_procedure_take_turns()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "concurrent");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "tick", "CREATE FUNCTION tick(n int) RETURNS int LANGUAGE sql AS $$ SELECT n + 1 $$;");

        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => admin.PostAsync($"/api/workspaces/{slug}/procedures/tick/publish?env=dev", null)));
        foreach (var response in responses) await HttpAssert.JsonAsync(response);
        Assert.Equal(6L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
        // Serialized: each deploy saw the one before it as its previous definition.
        Assert.Equal(5L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(previous_definition) FROM tcstudio.procedure_deployments"));
        Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'tick'"));
    }

    [Fact]
    public async Task Executing_needs_a_published_procedure_and_the_right_for_the_environment()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "exec-rights", environment: "prod");
        // Production is the environment's attribute, not its name.
        await HttpAssert.JsonAsync(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/prod", new { isProduction = true }));
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "one", new { }, env: "prod"), HttpStatusCode.Conflict);
        await PublishAsync(admin, slug, "one", env: "prod");

        using var member = await api.NewUserClientAsync("exec-member-" + Guid.NewGuid().ToString("N")[..6]);
        var username = (await HttpAssert.JsonAsync(await member.GetAsync("/api/me"))).GetProperty("username").GetString();
        await api.ExecuteAsync($"""
            INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
            SELECT w.id, u.id, 'Member', now() FROM workspaces w, users u WHERE w.slug = '{slug}' AND u.username = '{username}'
            """);
        await HttpAssert.ProblemAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prod"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await member.PostAsync($"/api/workspaces/{slug}/procedures/one/publish?env=prod", null), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "one", new { }, env: "staging"), HttpStatusCode.NotFound);
        await HttpAssert.JsonAsync(await ExecuteAsync(admin, slug, "one", new { }, env: "prod"));
        var noBody = await HttpAssert.JsonAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/one/execute?env=prod", null));
        Assert.Equal(1, noBody.GetProperty("resultSets")[0].GetProperty("rows")[0][0].GetInt32());
    }
}
