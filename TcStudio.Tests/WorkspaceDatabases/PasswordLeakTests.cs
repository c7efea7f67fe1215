using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using TcStudio.Api.Auth;
using TcStudio.Api.Environments;
using TcStudio.Api.Procedures;
using TcStudio.Api.Workspaces;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Seeding;
using TcStudio.Tests.Environments;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;
using TcStudio.Tests.Procedures;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.WorkspaceDatabases;

/// <summary>
/// A private cluster that logs every statement with its parameters (and the statements behind errors), with
/// pg_stat_statements; the API on it with every log line captured at Trace level, every Activity of the process
/// recorded, and OTLP export (traces, metrics, logs) to a local collector.
/// </summary>
public sealed class LeakHuntFixture : IAsyncLifetime
{
    public const string AdminPassword = "admin-leak-hunt-password";
    private const string SystemDatabase = "tc_studio";

    public LocalPostgresCluster Cluster { get; private set; } = null!;
    public OtlpReceiver Collector { get; } = new();
    public CapturedLogs Logs { get; } = new();
    public ConcurrentQueue<string> Activities { get; } = new();
    public WebApplicationFactory<Program> Api { get; private set; } = null!;
    public string SecretKey { get; } = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
    public string ProvisionerPassword { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
    public const string Provisioner = "tcstudio_provisioner";
    private ActivityListener? _listener;

    public string Superuser(string database = SystemDatabase) => Cluster.ConnectionString(database);

    public string ProvisionerConnectionString => new NpgsqlConnectionStringBuilder(Superuser())
    {
        Username = Provisioner, Password = ProvisionerPassword,
    }.ConnectionString;

    public async ValueTask InitializeAsync()
    {
        Cluster = await PostgresServer.StartPrivateClusterAsync();
        await ExecuteAsync(Superuser("postgres"), """
            ALTER SYSTEM SET log_statement = 'all';
            ALTER SYSTEM SET log_min_error_statement = 'debug5';
            ALTER SYSTEM SET log_min_messages = 'info';
            ALTER SYSTEM SET log_connections = on;
            ALTER SYSTEM SET log_parameter_max_length = -1;
            ALTER SYSTEM SET log_parameter_max_length_on_error = -1;
            ALTER SYSTEM SET log_error_verbosity = 'verbose';
            """);
        await ExecuteAsync(Superuser("postgres"), "SELECT pg_reload_conf()");
        await ExecuteAsync(Superuser("postgres"), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        await ExecuteAsync(Superuser("postgres"), $"CREATE DATABASE {SystemDatabase}");
        var options = new DbContextOptionsBuilder<TcStudioDbContext>()
            .UseNpgsql(Superuser(), npgsql => npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable));
        TcStudioDataExtensions.ConfigureContext(options);
        await using (var db = new TcStudioDbContext(options.Options)) await db.Database.MigrateAsync();
        await WorkspaceServerBootstrap.RunAsync(new WorkspaceServer("local", "postgres", ProvisionerConnectionString, null), Superuser(),
            createProvisioner: true, CancellationToken.None);

        _listener = new ActivityListener
        {
            ShouldListenTo = _ => true,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            // Other test classes run in this process at the same time against other servers (the adversarial drafts
            // set a role password on purpose): database activities of another server are theirs, not this API's.
            ActivityStopped = activity => { if (!OfAnotherServer(activity))
                {
                    Activities.Enqueue(string.Join('\n', new[] { activity.Source.Name, activity.DisplayName, activity.StatusDescription ?? "" }
                .Concat(activity.TagObjects.Select(t => $"{t.Key}={t.Value}"))
                .Concat(activity.Events.SelectMany(e => e.Tags.Select(t => $"{e.Name}:{t.Key}={t.Value}").Prepend(e.Name)))
                .Concat(activity.Baggage.Select(b => $"{b.Key}={b.Value}"))));
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);

        Api = new WebApplicationFactory<Program>().WithWebHostBuilder(web =>
        {
            web.UseEnvironment("Test");
            web.UseSetting("ConnectionStrings:tcstudio", Superuser());
            web.UseSetting("Auth:SigningKey", Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)));
            web.UseSetting("Seed:AdminPassword", AdminPassword);
            web.UseSetting("Seed:UserPassword", "user-leak-hunt-password");
            web.UseSetting("Workspaces:SecretKey", SecretKey);
            web.UseSetting("Seed:DevDatabaseName", "leak_hunt_twsbp_dev");
            web.UseSetting("WorkspaceServers:local:ConnectionString", ProvisionerConnectionString);
            web.UseSetting("OTEL_EXPORTER_OTLP_ENDPOINT", Collector.Endpoint);
            web.UseSetting("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
            web.UseSetting("Database:SlowQueryThreshold", "00:00:00.001"); // every command goes through the slow-query log too
            web.ConfigureLogging(logging =>
            {
                logging.SetMinimumLevel(LogLevel.Trace);
                logging.AddProvider(Logs);
            });
        });
        await using var scope = Api.Services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<SystemSeeder>().SeedAsync();
    }

    private bool OfAnotherServer(Activity activity) =>
        activity.GetTagItem("server.port") is { } port
        && !string.Equals(Convert.ToString(port, System.Globalization.CultureInfo.InvariantCulture),
            Cluster.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);

    public async ValueTask DisposeAsync()
    {
        await Api.DisposeAsync();
        _listener?.Dispose();
        await Collector.DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        await Cluster.DestroyAsync();
    }

    public static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    public async Task<List<string>> ColumnAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<string>();
        while (await reader.ReadAsync()) values.Add(reader.IsDBNull(0) ? "" : reader.GetString(0));
        return values;
    }
}

/// <summary>Every log line of a host: message, exception, structured values and scopes.</summary>
public sealed class CapturedLogs : ILoggerProvider, ISupportExternalScope
{
    private readonly ConcurrentQueue<string> _lines = new();
    private IExternalScopeProvider? _scopes;

    public string All => string.Join('\n', _lines);
    public IEnumerable<string> Lines => _lines;
    public int Count => _lines.Count;

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;
    public void Dispose() { }

    private sealed class Logger(CapturedLogs sink, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => sink._scopes?.Push(state);
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = new StringBuilder($"{category} {logLevel} {formatter(state, exception)} {exception}");
            if (state is IEnumerable<KeyValuePair<string, object?>> values) foreach (var (key, value) in values) line.Append($" {key}={value}");
            sink._scopes?.ForEachScope((scope, builder) => builder.Append($" scope={scope}"), line);
            sink._lines.Enqueue(line.ToString());
        }
    }
}

/// <summary>
/// No password reaches a place someone may read: after a whole life of environments through the API and the worker
/// (provision, migrate twice, publish, execute, validate, status, delete with drop), neither the roles' passwords nor
/// the provisioner's nor the superuser's appear in PostgreSQL's log (every statement, with parameters), in
/// pg_stat_statements, in the API's logs (Trace level), in any Activity of the process, in what was exported over
/// OTLP, nor in the worker's output. Role passwords only ever travel as SCRAM verifiers.
/// </summary>
public sealed class PasswordLeakTests(LeakHuntFixture hunt) : IClassFixture<LeakHuntFixture>
{
    [Fact]
    public async Task No_password_appears_in_server_logs_statistics_service_logs_or_traces()
    {
        using var admin = hunt.Api.CreateClient();
        var token = await admin.PostAsJsonAsync("/api/auth/token",
            new { username = SystemSeeder.AdminUsername, password = LeakHuntFixture.AdminPassword });
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer",
            (await HttpAssert.ReadAsync<TokenResponse>(token)).AccessToken);

        const string Slug = "leak-hunt";
        await HttpAssert.ReadAsync<WorkspaceDetails>(await admin.PostAsJsonAsync("/api/workspaces", new { name = "Leak hunt", slug = Slug }),
            HttpStatusCode.Created);
        await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{Slug}/environments",
            new { name = "dev", server = "local", databaseName = "leak_hunt_dev" }), HttpStatusCode.Created);
        await EnvironmentCalls.MigrateAsync(admin, Slug);
        await EnvironmentCalls.MigrateAsync(admin, Slug); // roles set again
        await HttpAssert.ReadAsync<ProcedureDraft>(await admin.PostAsJsonAsync($"/api/workspaces/{Slug}/procedures",
            new { name = "hello", sql = "CREATE FUNCTION hello(who text) RETURNS text LANGUAGE sql AS $$ SELECT 'hello ' || who $$;" }),
            HttpStatusCode.Created);
        await ProcedureCalls.ValidateAsync(admin, Slug, "hello");
        await ProcedureCalls.PublishAsync(admin, Slug, "hello");
        await ProcedureCalls.ExecutedAsync(admin, Slug, "hello", new { parameters = new { who = "world" } });
        await EnvironmentCalls.StatusAsync(admin, Slug);
        await ProcedureCalls.DetailsAsync(admin, Slug, "hello");

        // The roles' passwords, as the API keeps them (encrypted with its key).
        var passwords = new List<string> { hunt.ProvisionerPassword, hunt.Cluster.Password, LeakHuntFixture.AdminPassword };
        passwords.AddRange(await RolePasswordsAsync());

        // The worker too: its default run provisions the seeded twsbp/dev with the same provisioner.
        var worker = await MigrationWorkerRunner.RunAsync(new Dictionary<string, string?>(MigrationWorkerRunner.Environment(hunt.Superuser()))
        {
            ["WorkspaceServers__local__ConnectionString"] = hunt.ProvisionerConnectionString,
            ["Workspaces__SecretKey"] = hunt.SecretKey,
            ["Seed__DevDatabaseName"] = "leak_hunt_twsbp_dev",
        });
        Assert.True(worker.ExitCode == 0, worker.ToString());
        Assert.Contains("created database leak_hunt_twsbp_dev", worker.StandardOutput);
        passwords.AddRange(await RolePasswordsAsync());

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{Slug}/procedures/hello")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{Slug}/environments/dev?dropDatabase=true")).StatusCode);
        hunt.Api.Services.GetRequiredService<TracerProvider>().ForceFlush(10_000);
        hunt.Api.Services.GetService<MeterProvider>()?.ForceFlush(10_000);
        hunt.Api.Services.GetService<LoggerProvider>()?.ForceFlush(10_000);

        var serverLog = await File.ReadAllTextAsync(hunt.Cluster.LogFile);
        var statistics = string.Join('\n', await hunt.ColumnAsync(hunt.Superuser("postgres"), "SELECT query FROM pg_stat_statements"));
        // The API's tracer listens to Npgsql's activity source process-wide, so its export also holds the commands of
        // other test classes running beside this one (the adversarial drafts set a role password on purpose): spans
        // on another server are theirs, as for the Activities below.
        var port = hunt.Cluster.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // The same holds for exported log records: the slow-query log (below) of another class's server names that server.
        var exported = string.Join('\n', hunt.Collector.Spans
            .Where(span => span.Attributes?.GetValueOrDefault("server.port") is not { } spanPort || spanPort == port)
            .Select(span => span.Text)
            .Concat(hunt.Collector.Bodies("/v1/metrics").Select(body => Encoding.UTF8.GetString(body)))
            .Concat(hunt.Collector.Bodies("/v1/logs").SelectMany(OtlpTraceDecoder.DecodeLogs)
                .Where(record => record.Attributes.GetValueOrDefault("Server") is not { } server
                    || server.EndsWith(":" + port, StringComparison.Ordinal))
                .Select(record => record.Text)));
        var activities = string.Join('\n', hunt.Activities);
        // The slow-query log listens to Npgsql's activities process-wide too: a slow command of another test class
        // (on another server: every class has a cluster of its own here) is logged by this API's monitor as well.
        // Those lines are that class's; each names its server (the database names alone are the same on every cluster).
        var apiLogs = string.Join('\n', hunt.Logs.Lines.Where(line =>
            !line.StartsWith("TcStudio.Database.SlowQueries ", StringComparison.Ordinal)
            || Regex.Match(line, @" Server=\S*:(\d+|\?) ") is not { Success: true } server
            || server.Groups[1].Value == port || server.Groups[1].Value == "?"));
        var sources = new Dictionary<string, string>
        {
            ["postgres.log"] = serverLog,
            ["pg_stat_statements"] = statistics,
            ["the API's logs"] = apiLogs,
            ["Activities"] = activities,
            ["OTLP export"] = exported,
            ["the worker's output"] = worker.AllOutput,
        };

        // The places were looked at, and would have shown a password: statements with their parameters are logged,
        // the provisioning calls are in the statistics, Npgsql's command spans carry their SQL.
        Assert.Contains("create_workspace_role", serverLog);
        Assert.Contains("DETAIL:  parameters: $1 = ", serverLog);
        Assert.Contains("create_workspace_role", statistics);
        Assert.Contains("tcstudio_ownership", activities);
        Assert.True(hunt.Logs.Count > 100, $"{hunt.Logs.Count} log lines");
        Assert.NotEmpty(hunt.Collector.Bodies("/v1/traces"));

        Assert.Equal(7, passwords.Distinct().Count()); // two environments' two roles, the provisioner, the superuser, the admin
        foreach (var (where, text) in sources)
        {
            foreach (var password in passwords.Distinct())
            {
                Assert.False(text.Contains(password, StringComparison.Ordinal), $"a password appears in {where}");
            }
            // Any PASSWORD clause that reached a server carries a verifier, never a password.
            var clause = new Regex(@"PASSWORD\s+'(?!SCRAM-SHA-256\$)[^']*'", RegexOptions.IgnoreCase).Match(text);
            Assert.False(clause.Success, $"a PASSWORD clause without a verifier appears in {where}: {clause.Value}");
        }
    }

    private async Task<List<string>> RolePasswordsAsync()
    {
        var secrets = new WorkspaceSecrets(new ConfigurationBuilder().AddInMemoryCollection(
            new Dictionary<string, string?> { [WorkspaceSecrets.KeyName] = hunt.SecretKey }).Build(), new TestEnvironment());
        var passwords = new List<string>();
        await using var connection = new NpgsqlConnection(hunt.Superuser());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT owner_role, owner_secret, execute_role, execute_secret FROM workspace_databases WHERE owner_secret IS NOT NULL", connection);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            passwords.Add(secrets.Unprotect(reader.GetFieldValue<byte[]>(1), reader.GetString(0)));
            passwords.Add(secrets.Unprotect(reader.GetFieldValue<byte[]>(3), reader.GetString(2)));
        }
        return passwords;
    }

    private sealed class TestEnvironment : IHostEnvironment
    {
        public string EnvironmentName { get; set; } = "Test";
        public string ApplicationName { get; set; } = "tests";
        public string ContentRootPath { get; set; } = Path.GetTempPath();
        public Microsoft.Extensions.FileProviders.IFileProvider ContentRootFileProvider { get; set; } =
            new Microsoft.Extensions.FileProviders.NullFileProvider();
    }
}
