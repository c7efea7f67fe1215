using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TcStudio.DatabaseTelemetry;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Api;

/// <summary>
/// A table locked by someone else no longer drains the pool: requests that need it give up after
/// Database:LockTimeout (or Database:RequestStatementTimeout) with a 503 and Retry-After, without retries that
/// multiply the wait, while other routes and /health keep answering. The timeouts here are set small; the time
/// bounds asserted are generous multiples of them (the machine is shared), the attempt counts are exact.
/// </summary>
public sealed class BoundedWaitTests(PostgresServer server)
{
    private sealed class Api(WebApplicationFactory<Program> factory, LogSink logs, string database) : IAsyncDisposable
    {
        public WebApplicationFactory<Program> Factory => factory;
        public LogSink Logs => logs;
        public string Database => database;

        public async ValueTask DisposeAsync() => await factory.DisposeAsync();
    }

    private async Task<Api> StartAsync(params (string Key, string? Value)[] settings)
    {
        var database = await server.CreateDatabaseAsync();
        var logs = new LogSink();
        var factory = ApiHost.Over(server.ConnectionString(database), settings).WithWebHostBuilder(web =>
            web.ConfigureServices(services => services.AddLogging(logging => logging.AddProvider(logs))));
        await factory.SeedAsync();
        return new Api(factory, logs, database);
    }

    /// <summary>Holds LOCK TABLE … ACCESS EXCLUSIVE until disposed: every reader and writer of the table waits.</summary>
    private async Task<IAsyncDisposable> LockAsync(string database, string table)
    {
        var connection = new NpgsqlConnection(server.ConnectionString(database, pooling: false));
        await connection.OpenAsync();
        var transaction = await connection.BeginTransactionAsync();
        await new NpgsqlCommand($"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", connection, transaction).ExecuteNonQueryAsync();
        return new Held(connection, transaction);
    }

    private sealed class Held(NpgsqlConnection connection, NpgsqlTransaction transaction) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await transaction.RollbackAsync();
            await connection.DisposeAsync();
        }
    }

    private static async Task<(HttpResponseMessage Response, TimeSpan Elapsed)> TimedAsync(Func<Task<HttpResponseMessage>> send)
    {
        var watch = Stopwatch.StartNew();
        var response = await send();
        return (response, watch.Elapsed);
    }

    private static async Task<string> NewWorkspaceWithProcedureAsync(HttpClient admin)
    {
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "wait", "Waits");
        await HttpAssert.ReadAsync<TcStudio.Api.Procedures.ProcedureDraft>(
            await admin.PostAsJsonAsync($"/api/workspaces/{slug}/procedures", new { name = "p", sql = "select 1" }), HttpStatusCode.Created);
        return slug;
    }

    private static async Task<string> ReasonAsync(HttpResponseMessage response)
    {
        var problem = await HttpAssert.ProblemAsync(response, HttpStatusCode.ServiceUnavailable);
        Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, $"Retry-After: {response.Headers.RetryAfter}");
        return problem.GetProperty("reason").GetString()!;
    }

    [Fact]
    public async Task A_locked_table_makes_its_readers_answer_503_within_the_lock_timeout_while_other_routes_and_health_keep_working()
    {
        var lockTimeout = TimeSpan.FromSeconds(1);
        var poolWait = TimeSpan.FromSeconds(5);
        await using var api = await StartAsync(
            ("Database:LockTimeout", "00:00:01"), ("Database:RequestStatementTimeout", "00:00:03"),
            ("Database:MaxPoolSize", "10"), ("Database:ConnectTimeout", "00:00:05"));
        using var admin = await api.Factory.AdminClientAsync();
        var slug = await NewWorkspaceWithProcedureAsync(admin);
        await HttpAssert.JsonAsync(await admin.GetAsync("/api/me")); // warm: the session is cached, plans are prepared

        IReadOnlyCollection<string> attempts;
        await using (await LockAsync(api.Database, "stored_procedures"))
        await using (var observer = LockWaitObserver.Start(server.ConnectionString(api.Database, pooling: false)))
        {
            // More blocked requests than the pool has connections.
            var blocked = Enumerable.Range(0, 15)
                .Select(_ => TimedAsync(() => admin.GetAsync($"/api/workspaces/{slug}/procedures"))).ToList();
            await Task.Delay(200);
            var unrelated = new[] { "/api/me", $"/api/workspaces/{slug}", $"/api/workspaces/{slug}/members", "/api/roles" }
                .Select(path => TimedAsync(() => admin.GetAsync(path))).ToList();
            var health = TimedAsync(() => admin.GetAsync("/health"));

            var all = Task.WhenAll(blocked.Concat(unrelated).Append(health));
            // Before the fix these waited for the lock as long as it was held (here: for ever).
            Assert.Same(all, await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(120))));

            // Budget of a blocked request: a pool wait, then a lock wait; given ten times over for a loaded machine.
            var budget = (lockTimeout + poolWait) * 10;
            foreach (var (response, elapsed) in await Task.WhenAll(blocked))
            {
                Assert.Contains(await ReasonAsync(response), new[] { "lock_timeout", "pool_exhausted" });
                Assert.True(elapsed < budget, $"a blocked request took {elapsed}");
            }
            foreach (var (response, elapsed) in await Task.WhenAll(unrelated))
            {
                Assert.True(response.StatusCode == HttpStatusCode.OK,
                    $"{response.RequestMessage!.RequestUri}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                Assert.True(elapsed < budget, $"{response.RequestMessage!.RequestUri} took {elapsed}");
            }
            var (healthResponse, healthElapsed) = await health;
            var report = await healthResponse.Content.ReadAsStringAsync();
            Assert.True(healthResponse.StatusCode == HttpStatusCode.OK, report);
            Assert.DoesNotContain("unreachable", report);
            Assert.True(healthElapsed < budget, $"/health took {healthElapsed}");
            attempts = await observer.StopAsync();
        }

        // Each blocked request waited for the lock once at most: no retries multiplied the wait.
        Assert.InRange(attempts.Count, 1, 15);
        // And once the lock is gone, the route works again.
        await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/procedures"));
        Assert.Contains(api.Logs.Entries, e => e.Message.Contains("Database:LockTimeout", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_statement_stopped_by_the_request_timeout_is_503_and_is_not_retried()
    {
        await using var api = await StartAsync(("Database:LockTimeout", "00:00:00"), ("Database:RequestStatementTimeout", "00:00:01"));
        using var admin = await api.Factory.AdminClientAsync();
        var slug = await NewWorkspaceWithProcedureAsync(admin);

        HttpResponseMessage response;
        TimeSpan elapsed;
        IReadOnlyCollection<string> attempts;
        await using (await LockAsync(api.Database, "stored_procedures"))
        await using (var observer = LockWaitObserver.Start(server.ConnectionString(api.Database, pooling: false)))
        {
            (response, elapsed) = await TimedAsync(() => admin.GetAsync($"/api/workspaces/{slug}/procedures"));
            attempts = await observer.StopAsync();
            // The insights read the catalog through the data source, not EF: bounded by the same budget.
            var (tables, _) = await TimedAsync(() => admin.GetAsync("/api/admin/database/tables"));
            Assert.Equal("statement_timeout", await ReasonAsync(tables));
        }
        Assert.Equal("statement_timeout", await ReasonAsync(response));
        Assert.Single(attempts);
        // Four attempts (the default strategy retried it) would take four times the timeout at the very least.
        Assert.True(elapsed < TimeSpan.FromSeconds(4 * 1 * 10), $"took {elapsed}");
    }

    [Fact]
    public async Task The_settings_are_transaction_local_and_never_left_on_a_pooled_connection()
    {
        await using var api = await StartAsync(("Database:LockTimeout", "00:00:02"), ("Database:RequestStatementTimeout", "00:00:07"),
            ("Database:MinPoolSize", "1"), ("Database:MaxPoolSize", "1"));
        using var admin = await api.Factory.AdminClientAsync();
        var slug = await NewWorkspaceWithProcedureAsync(admin);
        await HttpAssert.JsonAsync(await admin.GetAsync($"/api/workspaces/{slug}/procedures"));
        await HttpAssert.JsonAsync(await admin.PatchAsJsonAsync($"/api/workspaces/{slug}", new { description = "x" }));

        // The only pooled connection served both requests; outside a request it has the server's defaults.
        var dataSource = api.Factory.Services.GetRequiredService<NpgsqlDataSource>();
        await using var connection = await dataSource.OpenConnectionAsync();
        Assert.Equal("0", await new NpgsqlCommand("SHOW lock_timeout", connection).ExecuteScalarAsync());
        Assert.Equal("0", await new NpgsqlCommand("SHOW statement_timeout", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task An_exhausted_pool_is_said_to_be_exhausted_in_the_answer_the_log_the_metric_and_health_never_unreachable()
    {
        await using var api = await StartAsync(
            ("Database:LockTimeout", "00:00:04"), ("Database:MinPoolSize", "0"), ("Database:MaxPoolSize", "3"),
            ("Database:ConnectTimeout", "00:00:01"), ("Database:HealthCheckTimeout", "00:00:03"),
            ("Health:Details", "true")); // the test reads the check's own status and description
        using var admin = await api.Factory.AdminClientAsync();
        var slug = await NewWorkspaceWithProcedureAsync(admin);
        using var metrics = new MeasurementRecorder(i => i.Name == DatabaseMetrics.PoolExhaustedName);

        HttpResponseMessage healthResponse;
        List<(HttpResponseMessage Response, TimeSpan Elapsed)> results;
        await using (await LockAsync(api.Database, "stored_procedures"))
        {
            var blocked = Enumerable.Range(0, 9).Select(_ => TimedAsync(() => admin.GetAsync($"/api/workspaces/{slug}/procedures"))).ToList();
            // While three requests hold the three connections and the rest wait for one.
            await IdempotencyTests.WaitUntilAsync(() => Task.FromResult(
                api.Factory.Services.GetRequiredService<NpgsqlPoolMetrics>().FindExhaustion("tcstudio") is not null));
            healthResponse = await admin.GetAsync("/health");
            results = [.. await Task.WhenAll(blocked)];
        }

        var reasons = new List<string>();
        foreach (var (response, _) in results) reasons.Add(await ReasonAsync(response));
        Assert.Contains("pool_exhausted", reasons);
        var exhausted = results.First(r => r.Response.StatusCode == HttpStatusCode.ServiceUnavailable);
        var problems = await Task.WhenAll(results.Select(r => r.Response.Content.ReadAsStringAsync()));
        Assert.Contains(problems, p => p.Contains("connection pool exhausted:", StringComparison.Ordinal)
            && p.Contains("waiting", StringComparison.Ordinal));
        Assert.NotNull(exhausted.Response);

        var report = await healthResponse.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, healthResponse.StatusCode);
        var check = JsonDocument.Parse(report).RootElement.GetProperty("checks").GetProperty("TcStudioDbContext");
        Assert.Equal("Degraded", check.GetProperty("status").GetString());
        Assert.Contains("connection pool exhausted:", check.GetProperty("description").GetString());
        Assert.DoesNotContain("unreachable", report);

        Assert.Contains(api.Logs.Entries, e => e.Category == "TcStudio.Database.Pool" && e.Level == LogLevel.Warning
            && e.Message.Contains("connection pool exhausted:", StringComparison.Ordinal));
        Assert.True(metrics.Of(DatabaseMetrics.PoolExhaustedName).Sum(m => m.Value) >= 1);
    }

    [Fact]
    public void The_settings_statement_is_one_select_of_transaction_local_set_config_and_commands_keep_their_kind()
    {
        var settings = new TcStudio.Api.Infrastructure.RequestTransactionSettings(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(1500.2));
        Assert.Equal("/* tcstudio:transaction-settings */ SELECT set_config('lock_timeout', '5000ms', true), "
            + "set_config('statement_timeout', '1501ms', true), "
            + "set_config('tcstudio.user_id', @tcstudio_user_id, true), set_config('tcstudio.workspace_id', @tcstudio_workspace_id, true)",
            settings.Sql);
        // Without timeouts the row-level-security settings remain; their values are parameters (one text for every request).
        Assert.Equal("/* tcstudio:transaction-settings */ SELECT set_config('tcstudio.user_id', @tcstudio_user_id, true), "
            + "set_config('tcstudio.workspace_id', @tcstudio_workspace_id, true)",
            new TcStudio.Api.Infrastructure.RequestTransactionSettings(TimeSpan.Zero, TimeSpan.Zero).Sql);
        Assert.Equal(SqlOperationKind.Delete, SqlOperationKind.Of(settings.Sql + ";\nDELETE FROM t"));
        Assert.Equal(SqlOperationKind.Select, SqlOperationKind.Of(settings.Sql + ";\nSELECT 1"));
    }

    /// <summary>
    /// Watches pg_stat_activity for statements waiting on a lock and records each wait once (backend and statement
    /// start): how many times requests tried, retries included.
    /// </summary>
    private sealed class LockWaitObserver : IAsyncDisposable
    {
        private readonly HashSet<string> _waits = [];
        private readonly CancellationTokenSource _stop = new();
        private Task _polling = Task.CompletedTask;

        public static LockWaitObserver Start(string connectionString)
        {
            var observer = new LockWaitObserver();
            observer._polling = observer.PollAsync(connectionString);
            return observer;
        }

        private async Task PollAsync(string connectionString)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            while (!_stop.IsCancellationRequested)
            {
                // Each poll in its own implicit transaction: pg_stat_activity is a snapshot per transaction.
                await using var command = new NpgsqlCommand("""
                    SELECT pid::text || '@' || query_start::text FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%stored_procedures%'
                    """, connection);
                await using (var reader = await command.ExecuteReaderAsync())
                {
                    while (await reader.ReadAsync()) lock (_waits) _waits.Add(reader.GetString(0));
                }
                try { await Task.Delay(20, _stop.Token); } catch (OperationCanceledException) { }
            }
        }

        public async Task<IReadOnlyCollection<string>> StopAsync()
        {
            await _stop.CancelAsync();
            await _polling;
            lock (_waits) return [.. _waits];
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested) await StopAsync();
            _stop.Dispose();
        }
    }
}
