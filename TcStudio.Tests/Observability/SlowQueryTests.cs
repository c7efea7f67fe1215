using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>
/// Every command is measured and the slow ones are counted, logged once (SQL, never parameter values; duration;
/// who issued it) and kept for the insights API, whether EF Core, raw Npgsql or the worker issued them.
/// </summary>
/// <remarks>
/// The command monitor listens to the whole process, so it also sees the other tests' commands: assertions pick
/// this test's own commands (by endpoint or a marker in the SQL) and this host's instruments (by meter scope).
/// </remarks>
public sealed class SlowQueryTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task A_slow_request_query_is_measured_counted_and_logged_once_with_its_endpoint_but_not_its_parameter_values()
    {
        const string secret = "parameter-value-that-must-not-be-logged";
        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = database.ConnectionString,
            ["Database:SlowQueryThreshold"] = "00:00:00.100",
        });
        using var client = api.CreateClient();
        var meters = api.Services.GetRequiredService<IMeterFactory>();
        using var recorder = new MeasurementRecorder(i => i.Meter.Scope == meters && i.Meter.Name == DatabaseMetrics.MeterName);

        var response = await client.GetAsync($"/test/slow/42?marker={secret}&seconds=0.3");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        (await client.GetAsync("/test/db")).EnsureSuccessStatusCode(); // and a fast one

        var logged = Assert.Single(api.Logs.Entries, e => e.Category == "TcStudio.Database.SlowQueries" && e.Message.Contains("GET /slow/{id:int}"));
        Assert.Equal(LogLevel.Warning, logged.Level);
        Assert.Contains("SELECT pg_sleep(", logged.Message);
        Assert.Contains("threshold 100 ms", logged.Message);
        Assert.Contains($"in database {database.DatabaseName}", logged.Message);
        Assert.DoesNotContain(secret, logged.Message);
        Assert.DoesNotContain(api.Logs.Entries, e => e.Message.Contains(secret));

        var kept = Assert.Single(api.Services.GetRequiredService<SlowQueryLog>().Snapshot(), q => q.Caller == "GET /slow/{id:int}");
        Assert.True(kept.DurationMs >= 300, $"{kept.DurationMs} ms");
        Assert.Equal(SqlOperationKind.Select, kept.OperationKind);
        Assert.DoesNotContain(secret, kept.Sql);

        Assert.Contains(recorder.Of(DatabaseMetrics.QueryDurationName),
            m => m.Value >= 0.3 && m.Tag(DatabaseMetrics.OperationKindTag) == SqlOperationKind.Select);
        Assert.True(recorder.Of(DatabaseMetrics.QueryDurationName).Count() >= 2, "the fast command is measured too");
        Assert.Contains(recorder.Of(DatabaseMetrics.SlowQueriesName),
            m => m.Value == 1 && m.Tag(DatabaseMetrics.OperationKindTag) == SqlOperationKind.Select);
    }

    [Fact]
    public async Task Slow_commands_issued_through_EF_Core_are_caught_by_the_same_monitor()
    {
        var marker = $"ef-{Guid.NewGuid():N}";
        var logs = new LogSink();
        using var host = DataHost.Build(database.ConnectionString, logs, new Dictionary<string, string?>
        {
            ["Database:SlowQueryThreshold"] = "00:00:00.100",
            ["Database:SizeSampleInterval"] = "01:00:00",
        });
        await host.StartAsync();
        try
        {
            await using (var scope = host.Services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
                var sql = "/* " + marker + " */ SELECT pg_sleep(0.2)";
                await db.Database.ExecuteSqlRawAsync(sql);
                // Fast EF commands are measured but not logged.
                await db.Roles.CountAsync();
            }

            var kept = Assert.Single(host.Services.GetRequiredService<SlowQueryLog>().Snapshot(), q => q.Sql.Contains(marker));
            Assert.Equal(SqlOperationKind.Select, kept.OperationKind);
            Assert.Equal("background", kept.Caller);
            Assert.Single(logs.Entries, e => e.Category == "TcStudio.Database.SlowQueries" && e.Message.Contains(marker));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task The_worker_names_its_verb_in_slow_query_logs_and_logs_its_connections_without_the_password()
    {
        var fresh = await database.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            var environment = MigrationWorkerRunner.Environment(database.Server.ConnectionString(fresh));
            environment["Database__SlowQueryThreshold"] = "00:00:00.001"; // every migration statement is "slow"
            var result = await MigrationWorkerRunner.RunAsync(environment, "migrate");

            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("from worker migrate in database " + fresh, result.StandardError);
            var admin = database.Server.Admin;
            Assert.Contains($"Opened a connection to PostgreSQL at {admin.Host}:{admin.Port}/{fresh} as {admin.Username}", result.StandardError);
            if (!string.IsNullOrEmpty(admin.Password)) Assert.DoesNotContain(admin.Password, result.AllOutput);
        }
        finally
        {
            await database.Server.DropDatabaseAsync(fresh);
        }
    }

    [Theory]
    [InlineData("SELECT 1", SqlOperationKind.Select)]
    [InlineData("  -- a comment\n /* another */ (select 1)", SqlOperationKind.Select)]
    [InlineData("insert into t values (1)", SqlOperationKind.Insert)]
    [InlineData("UPDATE t SET a = 1", SqlOperationKind.Update)]
    [InlineData("DELETE FROM t", SqlOperationKind.Delete)]
    [InlineData("WITH x AS (SELECT 1) SELECT * FROM x", SqlOperationKind.Other)]
    [InlineData("CREATE TABLE t (a int)", SqlOperationKind.Other)]
    [InlineData("/* never closed", SqlOperationKind.Other)]
    [InlineData("", SqlOperationKind.Other)]
    public void The_operation_kind_is_the_first_keyword(string sql, string expected) =>
        Assert.Equal(expected, SqlOperationKind.Of(sql));

    [Fact]
    public void The_in_memory_log_keeps_the_newest_entries_up_to_its_capacity()
    {
        var log = new SlowQueryLog(3);
        for (var i = 1; i <= 5; i++)
        {
            log.Add(new SlowQuery(DateTimeOffset.UnixEpoch.AddSeconds(i), i, $"SELECT {i}", SqlOperationKind.Select, "db", "test", false));
        }

        Assert.Equal(["SELECT 5", "SELECT 4", "SELECT 3"], log.Snapshot().Select(q => q.Sql));
        Assert.Equal(5, log.Total);
    }
}
