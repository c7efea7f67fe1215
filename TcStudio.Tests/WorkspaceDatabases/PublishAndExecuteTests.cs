using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.WorkspaceDatabases;

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
}
