using System.Net;
using Npgsql;
using TcStudio.SystemDatabase.Insights;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Observability;

/// <summary>GET /api/admin/database/…: system Admins only, real figures from a database with known contents.</summary>
public sealed class DatabaseInsightsApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    [Fact]
    public async Task Only_system_admins_see_the_insights()
    {
        using var user = await api.UserAsync();
        using var anonymous = api.CreateAnonymousClient();
        foreach (var path in new[] { "overview", "slow-queries", "tables", "indexes", "long-running" })
        {
            await HttpAssert.ProblemAsync(await user.GetAsync($"/api/admin/database/{path}"), HttpStatusCode.Forbidden);
            await HttpAssert.ProblemAsync(await anonymous.GetAsync($"/api/admin/database/{path}"), HttpStatusCode.Unauthorized);
        }
    }

    [Fact]
    public async Task The_overview_reports_the_server_size_sessions_pool_and_migrations()
    {
        using var admin = await api.AdminAsync();
        var overview = await HttpAssert.ReadAsync<DatabaseOverview>(await admin.GetAsync("/api/admin/database/overview"));

        Assert.Equal(api.DatabaseName, overview.Database);
        Assert.StartsWith("1", overview.ServerVersion);
        Assert.True(overview.SizeBytes > 1_000_000);
        Assert.Contains(overview.Connections, c => c.Count >= 1);
        Assert.Equal(0, overview.Migrations.Pending);
        Assert.True(overview.Migrations.Applied >= 1);
    }

    [Fact]
    public async Task Tables_list_the_system_tables_with_their_sizes_and_tuples()
    {
        using var admin = await api.AdminAsync();
        await api.ExecuteAsync("ANALYZE users");
        var tables = await HttpAssert.ReadAsync<List<TableStatistics>>(await admin.GetAsync("/api/admin/database/tables"));

        var users = Assert.Single(tables, t => t.Name == "users");
        Assert.True(users.TotalBytes > 0);
        Assert.True(users.LiveTuples >= 2);
        await HttpAssert.ValidationProblemAsync(await admin.GetAsync("/api/admin/database/tables?limit=0"), "limit");
    }

    [Fact]
    public async Task An_unused_index_and_a_duplicate_index_created_for_the_test_are_reported()
    {
        await api.ExecuteAsync("CREATE INDEX ix_test_unused_display_name ON users (display_name)");
        await api.ExecuteAsync("CREATE INDEX ix_test_duplicate_slug_prefix ON stored_procedures (workspace_id)");
        using var admin = await api.AdminAsync();

        var report = await HttpAssert.ReadAsync<IndexReport>(await admin.GetAsync("/api/admin/database/indexes"));

        Assert.Contains(report.Unused, i => i.Index == "ix_test_unused_display_name");
        var duplicate = Assert.Single(report.Duplicates, i => i.Index == "ix_test_duplicate_slug_prefix");
        Assert.Equal("ix_stored_procedures_workspace_id_updated_at", duplicate.CoveredBy);
        // Unique indexes are never "unused": they enforce a rule.
        Assert.DoesNotContain(report.Unused, i => i.Index.StartsWith("ux_"));
    }

    [Fact]
    public async Task A_query_running_longer_than_the_threshold_is_listed_and_slow_queries_say_their_source()
    {
        await using var sleeper = new NpgsqlConnection(api.ConnectionString);
        await sleeper.OpenAsync();
        // Long enough to outlast a slow sign-in on a loaded machine; cancelled once seen.
        await using var sleep = new NpgsqlCommand("SELECT pg_sleep(120) /* insights-long-running */", sleeper);
        var running = sleep.ExecuteNonQueryAsync();
        await Task.Delay(TimeSpan.FromSeconds(1.5));

        using var admin = await api.AdminAsync();
        var longRunning = await HttpAssert.ReadAsync<List<LongRunningQuery>>(
            await admin.GetAsync("/api/admin/database/long-running?thresholdSeconds=1"));
        Assert.Contains(longRunning, q => q.Query?.Contains("insights-long-running") == true);
        await HttpAssert.ValidationProblemAsync(await admin.GetAsync("/api/admin/database/long-running?thresholdSeconds=-1"), "thresholdSeconds");

        var slow = await HttpAssert.ReadAsync<SlowQueryReport>(await admin.GetAsync("/api/admin/database/slow-queries"));
        Assert.Contains(slow.Source, new[] { "pg_stat_statements", "in-memory" });
        Assert.NotNull(slow.Queries);
        sleep.Cancel();
        await Assert.ThrowsAnyAsync<Exception>(() => running); // 57014: cancelled on request
    }
}
