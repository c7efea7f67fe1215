using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.Procedures;

/// <summary>
/// A draft is one statement, and the server enforces it: what a workspace Member (who may only edit and validate
/// drafts) can and cannot make a PostgreSQL environment do, through the API and below its static check.
/// </summary>
public sealed class PostgresDraftIsolationTests(WorkspaceApiFixture api) : IClassFixture<WorkspaceApiFixture>
{
    /// <summary>The reproduction: '§' before $x$ once hid a COMMIT and a CREATE TABLE from the static check.</summary>
    private const string Smuggler =
        "CREATE FUNCTION g(§$x$ int) RETURNS int LANGUAGE sql AS 'select 1'; COMMIT; CREATE TABLE pwned(x int); --$x$";

    private const string RoleLeak =
        "CREATE FUNCTION h(§$x$ int) RETURNS int LANGUAGE sql AS 'select 1'; SELECT current_user::int; --$x$";

    private async Task<(HttpClient Owner, HttpClient Member, string Slug, string Database)> WorkspaceWithMemberAsync(string prefix)
    {
        var owner = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(owner, prefix);
        var member = await api.NewMemberClientAsync(slug, "Member", $"{prefix}-member");
        return (owner, member, slug, database);
    }

    private Task<string> OwnerRoleAsync(string database) =>
        api.WorkspaceScalarAsync<string>(database, "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()");

    [Fact]
    public async Task A_member_cannot_smuggle_statements_past_validation_and_nothing_runs_or_leaks()
    {
        var (owner, member, slug, database) = await WorkspaceWithMemberAsync("smuggle");
        using var _ = owner;
        using var __ = member;
        var ownerRole = await OwnerRoleAsync(database);
        await WorkspaceApiFixture.CreateProcedureAsync(member, slug, "g", Smuggler);
        await WorkspaceApiFixture.CreateProcedureAsync(member, slug, "h", RoleLeak);

        foreach (var name in new[] { "g", "h" })
        {
            var statically = await ProcedureCalls.ValidateAsync(member, slug, name, "dialect=postgres");
            Assert.False(statically.Valid);
            Assert.Contains("exactly one statement", statically.Errors[0].Message);

            // Against the environment: a verdict (never a 5xx), naming the problem, without the owner role's name.
            var response = await member.PostAsync($"/api/workspaces/{slug}/procedures/{name}/validate?env=dev", null);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}");
            var verdict = System.Text.Json.JsonSerializer.Deserialize<ValidationResponse>(body, HttpAssert.ResponseJson)!;
            Assert.False(verdict.Valid, body);
            Assert.Contains("exactly one statement", verdict.Errors[0].Message);
            Assert.DoesNotContain(ownerRole, body, StringComparison.OrdinalIgnoreCase);

            // Publishing (which a Member may not do, and the owner may) is a 4xx naming it too.
            await HttpAssert.ProblemAsync(await member.PostAsync($"/api/workspaces/{slug}/procedures/{name}/publish?env=dev", null),
                HttpStatusCode.Forbidden);
            var refused = await HttpAssert.ProblemAsync(await owner.PostAsync($"/api/workspaces/{slug}/procedures/{name}/publish?env=dev", null),
                HttpStatusCode.UnprocessableEntity);
            Assert.Contains("exactly one statement", refused.GetProperty("errors")[0].GetProperty("message").GetString());
            Assert.DoesNotContain(ownerRole, refused.ToString(), StringComparison.OrdinalIgnoreCase);
        }

        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_class WHERE relname = 'pwned'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname IN ('g', 'h')"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
    }

    private async Task<(WorkspaceDatabaseService Databases, WorkspaceTarget Target, PostgresWorkspaceProvider Provider)> BelowTheApiAsync(string slug,
        string database)
    {
        var databases = api.Factory.Services.GetRequiredService<WorkspaceDatabaseService>();
        var workspaceId = await api.ScalarAsync<Guid>("SELECT id FROM workspaces WHERE slug = @s", ("s", slug));
        var provider = api.Factory.Services.GetServices<IWorkspaceDatabaseProvider>().OfType<PostgresWorkspaceProvider>().Single();
        var environmentId = await api.ScalarAsync<Guid>("SELECT id FROM workspace_environments WHERE workspace_id = @w AND name = 'dev'",
            ("w", workspaceId));
        return (databases, new WorkspaceTarget(workspaceId, slug, "dev", "local", database, environmentId), provider);
    }

    [Theory]
    [InlineData("CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'select 1'; COMMIT; CREATE TABLE pwned(x int)")]
    [InlineData("CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'select 1'; CREATE TABLE pwned(x int)")]
    [InlineData(Smuggler)]
    [InlineData("CREATE TABLE pwned(x int); CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'select 1'")]
    public async Task The_server_refuses_a_second_statement_even_when_the_static_check_is_bypassed(string draft)
    {
        using var owner = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(owner, "server-refuses");
        var (databases, target, provider) = await BelowTheApiAsync(slug, database);
        var shape = PostgresWorkspaceProvider.DraftShape.Unchecked(draft, "g");

        var validation = await databases.RunAsync(target, WorkspaceCredential.Deploy,
            (lease, ct) => provider.ValidateOnServerAsync((NpgsqlConnection)lease.Connection, "g", draft, shape, ct), CancellationToken.None);
        Assert.False(validation.IsValid);
        Assert.StartsWith("42601: cannot insert multiple commands into a prepared statement", validation.Errors[0].Message);

        var deploy = await Assert.ThrowsAsync<WorkspaceSqlException>(() => databases.RunAsync(target, WorkspaceCredential.Deploy,
            (lease, ct) => provider.DeployOnServerAsync((NpgsqlConnection)lease.Connection, "g", draft, shape, "test", ct), CancellationToken.None));
        Assert.Equal("42601", deploy.Number);

        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_class WHERE relname = 'pwned'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'g'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM tcstudio.procedure_deployments"));
        // The session is still usable: the transaction was rolled back, not left open or aborted.
        Assert.Equal(1, await databases.RunAsync(target, WorkspaceCredential.Deploy, async (lease, ct) =>
        {
            await using var command = new NpgsqlCommand("SELECT 1", (NpgsqlConnection)lease.Connection);
            return (int)(await command.ExecuteScalarAsync(ct))!;
        }, CancellationToken.None));
    }

    [Fact]
    public async Task A_single_statement_that_is_not_the_named_routine_is_undone_even_below_the_static_check()
    {
        using var owner = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(owner, "not-routine");
        var (databases, target, provider) = await BelowTheApiAsync(slug, database);
        foreach (var draft in new[] { "CREATE TABLE pwned(x int)", "CREATE FUNCTION other() RETURNS int LANGUAGE sql AS 'select 1'" })
        {
            var shape = PostgresWorkspaceProvider.DraftShape.Unchecked(draft, "g");
            var validation = await databases.RunAsync(target, WorkspaceCredential.Deploy,
                (lease, ct) => provider.ValidateOnServerAsync((NpgsqlConnection)lease.Connection, "g", draft, shape, ct), CancellationToken.None);
            Assert.Contains("did not create or replace 'g'", Assert.Single(validation.Errors).Message);
            var refused = await Assert.ThrowsAsync<WorkspaceDraftRefusedException>(() => databases.RunAsync(target, WorkspaceCredential.Deploy,
                (lease, ct) => provider.DeployOnServerAsync((NpgsqlConnection)lease.Connection, "g", draft, shape, "test", ct),
                CancellationToken.None));
            Assert.Equal(422, TcStudio.Api.Infrastructure.ApiExceptionHandler.StatusOf(refused));
        }
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_class WHERE relname = 'pwned'"));
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname IN ('g', 'other')"));
    }

    [Fact]
    public async Task Security_definer_routines_are_refused_statically_and_by_the_catalog_check()
    {
        using var owner = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(owner, "definer");
        const string Definer =
            "CREATE FUNCTION elevate() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN CREATE TABLE pwned(x int); END $$;";
        await WorkspaceApiFixture.CreateProcedureAsync(owner, slug, "elevate", Definer);
        var statically = await ProcedureCalls.ValidateAsync(owner, slug, "elevate", "dialect=postgres");
        Assert.Contains("SECURITY DEFINER", statically.Errors[0].Message);
        await HttpAssert.ProblemAsync(await owner.PostAsync($"/api/workspaces/{slug}/procedures/elevate/publish?env=dev", null),
            HttpStatusCode.UnprocessableEntity);

        // Below the static check (as if it missed the words), the catalog says what the server made of them.
        var (databases, target, provider) = await BelowTheApiAsync(slug, database);
        var text = Definer.TrimEnd(';');
        var shape = PostgresWorkspaceProvider.DraftShape.Unchecked(text, "elevate");
        var validation = await databases.RunAsync(target, WorkspaceCredential.Deploy,
            (lease, ct) => provider.ValidateOnServerAsync((NpgsqlConnection)lease.Connection, "elevate", text, shape, ct), CancellationToken.None);
        Assert.Contains("SECURITY DEFINER is not allowed", Assert.Single(validation.Errors).Message);
        var refused = await Assert.ThrowsAsync<WorkspaceDraftRefusedException>(() => databases.RunAsync(target, WorkspaceCredential.Deploy,
            (lease, ct) => provider.DeployOnServerAsync((NpgsqlConnection)lease.Connection, "elevate", text, shape, "test", ct),
            CancellationToken.None));
        Assert.Contains("SECURITY DEFINER", refused.Message);
        Assert.Equal(0L, await api.WorkspaceScalarAsync<long>(database, "SELECT count(*) FROM pg_proc WHERE proname = 'elevate'"));
    }

    [Fact]
    public async Task A_sql_standard_body_with_semicolons_is_one_statement_and_publishes()
    {
        using var owner = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(owner, "atomic");
        await WorkspaceApiFixture.CreateProcedureAsync(owner, slug, "twice", """
            CREATE FUNCTION twice(n int) RETURNS int
            LANGUAGE sql
            BEGIN ATOMIC
                SELECT CASE WHEN n IS NULL THEN 0 ELSE n * 2 END;
            END;
            """);
        var valid = await ProcedureCalls.ValidateAsync(owner, slug, "twice");
        Assert.True(valid.Valid, string.Join("; ", valid.Errors));
        await ProcedureCalls.PublishAsync(owner, slug, "twice");
        var result = await ProcedureCalls.ExecutedAsync(owner, slug, "twice", new { parameters = new { n = 21 } });
        Assert.Equal(42, result.ResultSets[0].Cell(0, 0).GetInt32());
    }

    [Fact]
    public async Task Server_errors_do_not_name_the_workspace_roles()
    {
        using var owner = await api.AdminAsync();
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(owner, "scrub");
        var ownerRole = await OwnerRoleAsync(database);
        await WorkspaceApiFixture.CreateProcedureAsync(owner, slug, "who",
            "CREATE FUNCTION who() RETURNS int LANGUAGE sql AS $$ SELECT current_user::int $$;");
        await ProcedureCalls.PublishAsync(owner, slug, "who");
        var failed = await HttpAssert.ProblemAsync(await owner.PostAsJsonAsync($"/api/workspaces/{slug}/procedures/who/execute?env=dev", new { }),
            HttpStatusCode.UnprocessableEntity);
        var detail = failed.GetProperty("detail").GetString()!;
        Assert.Contains("<workspace role>", detail);
        Assert.DoesNotContain("tcws_", detail);
        Assert.DoesNotContain(ownerRole, detail);
    }

    [Fact]
    public async Task Results_of_any_type_come_back_without_a_server_error()
    {
        using var owner = await api.AdminAsync();
        var (slug, _) = await api.NewWorkspaceWithEnvironmentAsync(owner, "exotic");
        await WorkspaceApiFixture.CreateProcedureAsync(owner, slug, "exotic", """
            CREATE FUNCTION exotic()
            RETURNS TABLE (r int4range, v tsvector, m money, x xml, p point, i inet, b bit(3), c "char", l pg_lsn, t tid,
                           row_value record, arr int[][], nested text[], iv interval, big numeric, f float8, u uuid)
            LANGUAGE sql AS $$
                SELECT int4range(1, 5), to_tsvector('simple', 'a b'), 12.5::money, '<a/>'::xml, point(1, 2), '10.0.0.1'::inet,
                       B'101', 'x'::"char", '0/16B6C50'::pg_lsn, '(0,1)'::tid, ROW(1, 'a'), ARRAY[[1, 2], [3, 4]], ARRAY['a', NULL],
                       interval '1 day 2 hours', 1e40::numeric, 'NaN'::float8, gen_random_uuid()
            $$;
            """);
        await ProcedureCalls.PublishAsync(owner, slug, "exotic");
        var result = await ProcedureCalls.ExecutedAsync(owner, slug, "exotic", new { });
        var set = result.ResultSets[0];
        Assert.Equal(17, set.Rows[0].Length);
        Assert.Equal("1" + new string('0', 40), set.Cell(0, 14).GetString()); // beyond decimal: its digits, not a 500
        Assert.Equal("NaN", set.Cell(0, 15).GetString());
    }
}
