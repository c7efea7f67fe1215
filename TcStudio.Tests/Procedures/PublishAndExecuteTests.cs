using System.Net;
using System.Net.Http.Json;
using TcStudio.Api.Environments;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;
using static TcStudio.Tests.Procedures.ProcedureCalls;

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

        var validation = await ValidateAsync(admin, slug, "report.orders_between");
        Assert.True(validation.Valid, string.Join("; ", validation.Errors));
        var statically = await ValidateAsync(admin, slug, "report.orders_between", "dialect=postgres");
        Assert.True(statically.Valid, string.Join("; ", statically.Errors));

        var published = await PublishAsync(admin, slug, "report.orders_between");
        Assert.Equal("dev", published.Environment);

        var result = await ExecutedAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 3, last_id = "5" }, maxRows = 2 });
        var set = Assert.Single(result.ResultSets);
        Assert.Equal(["id", "label", "amount"], set.ColumnNames());
        Assert.Equal("integer", set.Columns[0].Type);
        Assert.Equal(2, set.Rows.Count);
        Assert.Equal(3, set.Cell(0, 0).GetInt32());
        Assert.Equal("order 3", set.Cell(0, 1).GetString());
        Assert.True(result.Truncated);

        var details = await DetailsAsync(admin, slug, "report.orders_between");
        var dev = Assert.Single(details.Environments);
        Assert.Equal("deployed", dev.State);
        Assert.True(dev.MatchesDraft);
        Assert.Equal("published", details.Status);
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

    [Fact]
    public async Task A_procedure_returns_output_parameters_and_one_result_set_per_refcursor()
    {
        using var admin = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(admin, "refcursors");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "order_summary", Summary);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dashboards", Dashboards);
        await PublishAsync(admin, slug, "order_summary");
        await PublishAsync(admin, slug, "dashboards");

        var result = await ExecutedAsync(admin, slug, "order_summary", new { parameters = new { customer = "acme", total = 7.5 } });
        Assert.Equal(50.0m, result.Output("total").GetDecimal());
        Assert.Equal(3, result.Output("line_count").GetInt32());
        Assert.Equal(2, result.ResultSets.Count);
        Assert.Equal(["line_no", "item"], result.ResultSets[0].ColumnNames());
        Assert.Equal("acme-3", result.ResultSets[0].Cell(2, 1).GetString());
        Assert.Equal("thanks, acme", result.ResultSets[1].Cell(0, 0).GetString());
        Assert.False(result.Truncated);

        var functionSets = await ExecutedAsync(admin, slug, "dashboards", new { parameters = new { top_n = 4 }, maxRows = 3 });
        Assert.Equal(2, functionSets.ResultSets.Count);
        Assert.Equal(3, functionSets.ResultSets[0].Rows.Count);
        Assert.Empty(functionSets.ResultSets[1].Rows); // the row cap counts across result sets
        Assert.Equal("today", functionSets.ResultSets[1].Columns[0].Name);
        Assert.True(functionSets.Truncated);
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
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 1, drop_table = "x" } }),
            "parameters.drop_table");
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { last_id = 4 } }), "parameters.first_id");
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 1 }, timeoutSeconds = 0 }),
            "timeoutSeconds");
        await HttpAssert.ValidationProblemAsync(
            await ExecuteAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 1 }, maxRows = 0 }), "maxRows");

        // An injection attempt is just a (bad) value: parameters never become SQL text.
        await HttpAssert.ValidationProblemAsync(await ExecuteAsync(admin, slug, "report.orders_between",
            new { parameters = new { first_id = "1); DROP SCHEMA tcstudio CASCADE; --" } }), "parameters.first_id");

        var defaults = await ExecutedAsync(admin, slug, "report.orders_between", new { parameters = new { first_id = 9 } });
        Assert.Equal(2, defaults.ResultSets[0].Rows.Count); // last_id defaults to 10

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
        var timeout = await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "slow",
            new { parameters = new { seconds = 30 }, timeoutSeconds = 1 }),
            HttpStatusCode.GatewayTimeout);
        Assert.InRange(started.Elapsed.TotalSeconds, 0.9, 10);
        Assert.Contains("timeout", timeout.GetProperty("detail").GetString());
        // A timeout is the statement's, not the environment's: it stays healthy.
        var status = await HttpAssert.ReadAsync<EnvironmentStatusResponse>(await admin.GetAsync($"/api/workspaces/{slug}/environments/dev/status"));
        Assert.Equal("ready", status.Status);
        Assert.Contains("\"outcome\": \"timed_out\"", await api.ScalarAsync<string>(
            "SELECT details::text FROM activities WHERE action = 'procedure.executed' AND details->>'name' = 'slow'"));
    }

    [Fact]
    public async Task A_client_that_disconnects_cancels_the_statement_on_the_server()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "cancel");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "nap",
            "CREATE FUNCTION nap() RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;");
        await PublishAsync(admin, slug, "nap");

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1.5));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            admin.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/nap/execute?env=dev", new { }, cts.Token));

        var deadline = DateTime.UtcNow.AddSeconds(10);
        long running;
        do
        {
            await Task.Delay(200);
            running = await api.RunningStatementsAsync(database, "nap()");
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
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "two_things",
            "CREATE FUNCTION two_things() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\nCOPY (SELECT 1) TO PROGRAM 'id';");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "misnamed",
            "CREATE FUNCTION other_name() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "not_a_routine", "DROP SCHEMA tcstudio CASCADE");

        var broken = await ValidateAsync(admin, slug, "broken");
        Assert.False(broken.Valid);
        Assert.Equal(3, broken.Errors[0].Line);
        Assert.StartsWith("42601:", broken.Errors[0].Message);

        var two = await ValidateAsync(admin, slug, "two_things", "dialect=postgres");
        Assert.Equal(2, two.Errors[0].Line);
        var misnamed = await ValidateAsync(admin, slug, "misnamed");
        Assert.Contains("must match", misnamed.Errors[0].Message);

        foreach (var name in new[] { "broken", "two_things", "misnamed", "not_a_routine" })
        {
            var refused = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/{name}/publish?env=dev", null),
                HttpStatusCode.UnprocessableEntity);
            Assert.True(refused.GetProperty("errors").GetArrayLength() > 0);
        }
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database,
            "SELECT count(*) FROM pg_proc WHERE proname IN ('broken', 'two_things', 'other_name')"));
        Assert.Equal("draft", await api.ScalarAsync<string>("SELECT status FROM stored_procedures WHERE name = 'broken'"));

        await HttpAssert.ValidationProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate", null), "env");
        await HttpAssert.ValidationProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate?dialect=cobol", null),
            "dialect");
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/broken/validate?env=nowhere", null),
            HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Republishing_replaces_the_routine_tracks_the_draft_and_delete_drops_it_everywhere()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "republish");
        await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "test", server = "local", databaseName = api.NewDatabaseName("republish_test"), create = true }), HttpStatusCode.Created);
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "greet",
            "CREATE FUNCTION greet(who text) RETURNS text LANGUAGE sql AS $$ SELECT 'hello ' || who $$;");
        await PublishAsync(admin, slug, "greet");

        await HttpAssert.ReadAsync<ProcedureDraft>(await admin.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/greet",
            new
            {
                sql = "CREATE OR REPLACE FUNCTION greet(who text, punctuation text DEFAULT '!') RETURNS text LANGUAGE sql "
                    + "AS $$ SELECT 'hi ' || who || punctuation $$;",
            }));
        var states = (await DetailsAsync(admin, slug, "greet")).Environments.ToDictionary(e => e.Environment);
        Assert.False(states["dev"].MatchesDraft);
        Assert.Equal("not_deployed", states["test"].State);

        await PublishAsync(admin, slug, "greet");
        var greeting = await ExecutedAsync(admin, slug, "greet", new { parameters = new { who = "ana" } });
        Assert.Equal("hi ana!", greeting.ResultSets[0].Cell(0, 0).GetString());
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
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "price",
            "CREATE FUNCTION price() RETURNS numeric LANGUAGE sql AS $$ SELECT 10.0 $$;");
        await PublishAsync(admin, slug, "price");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "fresh",
            "CREATE FUNCTION fresh() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; -- fail-the-system-step");

        // The system database refuses to record publishes whose SQL carries the marker.
        await using (await api.RefuseRecordingPublishesAsync())
        {
            await HttpAssert.ReadAsync<ProcedureDraft>(await admin.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/price",
                new { sql = "CREATE OR REPLACE FUNCTION price() RETURNS numeric LANGUAGE sql AS $$ SELECT 99.0 $$; -- fail-the-system-step" }));

            var replaced = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/price/publish?env=dev", null),
                HttpStatusCode.InternalServerError);
            Assert.Equal("system", replaced.GetProperty("failedSide").GetString());
            Assert.True(replaced.GetProperty("compensated").GetBoolean());
            Assert.Contains("previous definition was restored", replaced.GetProperty("detail").GetString());
            var price = await ExecutedAsync(admin, slug, "price", new { });
            Assert.Equal(10.0m, price.ResultSets[0].Cell(0, 0).GetDecimal());
            Assert.Equal(1L, await api.WorkspaceScalarAsync<long>(database,
                "SELECT count(*) FROM tcstudio.procedure_deployments WHERE procedure = 'price'"));

            var brandNew = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/fresh/publish?env=dev", null),
                HttpStatusCode.InternalServerError);
            Assert.Contains("new procedure was dropped", brandNew.GetProperty("detail").GetString());
            Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'fresh'"));
            Assert.Equal("draft", await api.ScalarAsync<string>("SELECT status FROM stored_procedures WHERE name = 'fresh'"));
        }
    }

    [Fact]
    public async Task Concurrent_publishes_of_one_procedure_take_turns()
    {
        using var admin = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(admin, "concurrent");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "tick",
            "CREATE FUNCTION tick(n int) RETURNS int LANGUAGE sql AS $$ SELECT n + 1 $$;");

        var responses = await Task.WhenAll(Enumerable.Range(0, 6)
            .Select(_ => admin.PostAsync($"/api/workspaces/{slug}/procedures/tick/publish?env=dev", null)));
        foreach (var response in responses) await HttpAssert.ReadAsync<PublishResponse>(response);
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
        await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}/environments/prod",
            new { isProduction = true }));
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "one", "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;");
        await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "one", new { }, env: "prod"), HttpStatusCode.Conflict);
        await PublishAsync(admin, slug, "one", env: "prod");

        using var member = await api.NewMemberClientAsync(slug, "Member", "exec-member");
        await HttpAssert.ProblemAsync(await ExecuteAsync(member, slug, "one", new { }, env: "prod"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await member.PostAsync($"/api/workspaces/{slug}/procedures/one/publish?env=prod", null),
            HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await ExecuteAsync(admin, slug, "one", new { }, env: "staging"), HttpStatusCode.NotFound);
        await ExecutedAsync(admin, slug, "one", new { }, env: "prod");
        var noBody = await HttpAssert.ReadAsync<ExecutionResult>(await admin.PostAsync($"{Path(slug, "one")}/execute?env=prod", null));
        Assert.Equal(1, noBody.ResultSets[0].Cell(0, 0).GetInt32());
    }
}
