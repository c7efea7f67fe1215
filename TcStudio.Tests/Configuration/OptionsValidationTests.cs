using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.Configuration;

/// <summary>
/// Every options class is validated at start: one bad value stops the API or the worker with exit code 2 and one line
/// naming the key (never the value). The keys renamed to TimeSpans (…Seconds, …Ms) still take effect, with one
/// deprecation line naming the successor. The processes are pointed at a port nothing listens on: none of this needs a
/// database.
/// </summary>
public sealed class OptionsValidationTests
{
    /// <summary>Stands in for a secret typed into the wrong key: it must never be printed.</summary>
    private const string NotEchoed = "n0t-echoed-7f3a";

    private const string UnreachableDatabase = "Host=127.0.0.1;Port=1;Database=tc_studio;Username=u;Password=never-printed";

    private static string ApiDll => RepositoryPaths.ProjectOutput("TcStudio.Api");

    private static Dictionary<string, string?> ApiEnvironment() => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Production",
        ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
        ["Auth__SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)),
        ["Workspaces__SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
        ["ConnectionStrings__tcstudio"] = UnreachableDatabase,
        ["Database__StartupTimeout"] = "00:00:01",
    };

    private static Dictionary<string, string?> WorkerEnvironment()
    {
        var environment = MigrationWorkerRunner.Environment(UnreachableDatabase, "Production");
        environment["Database__StartupTimeout"] = "00:00:01";
        environment.Remove("Workspaces__ConnectTimeout");
        return environment;
    }

    public static TheoryData<string, string, string> BadValues => new()
    {
        // The binder cannot convert it (its own message would quote the value).
        { "Workspaces__ConnectTimeout", "three seconds " + NotEchoed, "Workspaces:ConnectTimeout" },
        { "Database__SlowQueryThreshold", NotEchoed, "Database:SlowQueryThreshold" },
        // Converts, but is out of range.
        { "Database__CommandTimeout", "-00:00:01", "Database:CommandTimeout" },
        { "Workspaces__MaxPoolSize", "0", "Workspaces:MaxPoolSize" },
        { "Activities__MonthsAhead", "121", "Activities:MonthsAhead" },
        { "Workspaces__Limits__Connections", "0", "Workspaces:Limits:Connections" },
        { "Workspaces__Limits__WorkMemKilobytes", "8", "Workspaces:Limits:WorkMemKilobytes" },
        { "SystemRoles__App", "App Role " + NotEchoed, "SystemRoles:App" },
        // A tunnel named by its host alone: no user, so the process stops before any connection is tried.
        { "Database__Ssh__Host", "bastion-" + NotEchoed, "Database:Ssh:User" },
        { "WorkspaceServers__local__Ssh__Host", "bastion-" + NotEchoed, "WorkspaceServers:local:Ssh:User" },
        // A deprecated key is checked too, under its own name.
        { "Database__ConnectTimeoutSeconds", NotEchoed, "Database:ConnectTimeoutSeconds" },
        // A renamed key that takes effect: 600 s is longer than the default Workspaces:MaxExecuteTimeout (300 s).
        { "Workspaces__DefaultExecuteTimeoutSeconds", "600", "Workspaces:DefaultExecuteTimeout" },
    };

    public static TheoryData<string, string, string> ApiOnlyBadValues => new()
    {
        { "Auth__TokenLifetime", "00:00:00", "Auth:TokenLifetime" },
        { "Api__Https__Port", NotEchoed, "Api:Https:Port" },
    };

    public static TheoryData<string, string, string> WorkerOnlyBadValues => new()
    {
        // The backup scheduler's section is checked at the worker's start, whatever the verb.
        { "Backup__KeepLast", "-1", "Backup:KeepLast" },
        { "Backup__KeepDays", NotEchoed, "Backup:KeepDays" },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    [MemberData(nameof(ApiOnlyBadValues))]
    public async Task Api_stops_on_one_bad_value_with_exit_2_and_one_line_naming_the_key(string variable, string value, string key)
    {
        var environment = ApiEnvironment();
        environment[variable] = value;

        var result = await ProcessRunner.RunDotnetAsync(ApiDll, [], environment, TimeSpan.FromSeconds(90));

        AssertOneLineNamingTheKey(result, key);
    }

    [Theory]
    [MemberData(nameof(BadValues))]
    [MemberData(nameof(WorkerOnlyBadValues))]
    public async Task Worker_stops_on_one_bad_value_with_exit_2_and_one_line_naming_the_key(string variable, string value, string key)
    {
        var environment = WorkerEnvironment();
        environment[variable] = value;

        var result = await MigrationWorkerRunner.RunAsync(environment, "status");

        AssertOneLineNamingTheKey(result, key);
    }

    [Fact]
    public async Task Api_reads_a_deprecated_key_and_logs_its_successor_once()
    {
        var environment = ApiEnvironment();
        environment["Workspaces__ConnectTimeoutSeconds"] = "2";

        // The database is unreachable: exit 1 after the start-up wait, the deprecation line logged before it.
        var result = await ProcessRunner.RunDotnetAsync(ApiDll, [], environment, TimeSpan.FromSeconds(90));

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Equal(1, Occurrences(result.AllOutput,
            "Configuration key 'Workspaces:ConnectTimeoutSeconds' is deprecated; use 'Workspaces:ConnectTimeout' (hh:mm:ss) instead."));
    }

    [Fact]
    public async Task Worker_reads_a_deprecated_key_and_logs_its_successor_once()
    {
        var environment = WorkerEnvironment();
        environment["Database__SlowQueryThresholdMs"] = "250";

        // script --idempotent needs no database.
        var result = await MigrationWorkerRunner.RunAsync(environment, "script", "--idempotent");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(1, Occurrences(result.StandardError,
            "Configuration key 'Database:SlowQueryThresholdMs' is deprecated; use 'Database:SlowQueryThreshold' (hh:mm:ss) instead."));
    }

    [Fact]
    public void Deprecated_keys_set_the_renamed_options_and_the_connection_string_unless_the_new_key_is_set()
    {
        using var host = BuildHost(new()
        {
            ["Database:ConnectTimeoutSeconds"] = "7",
            ["Database:CommandTimeoutSeconds"] = "45",
            ["Database:IdleLifetimeSeconds"] = "20",
            ["Database:SlowQueryThresholdMs"] = "250",
            ["Workspaces:RetryBaseDelayMilliseconds"] = "50",
            ["Workspaces:CircuitBreakSeconds"] = "1.5",
            // Both set: the new key wins.
            ["Workspaces:ConnectTimeoutSeconds"] = "9",
            ["Workspaces:ConnectTimeout"] = "00:00:04",
        });

        var database = host.Services.GetRequiredService<IOptions<DatabaseOptions>>().Value;
        Assert.Equal(TimeSpan.FromSeconds(7), database.ConnectTimeout);
        Assert.Equal(TimeSpan.FromSeconds(45), database.CommandTimeout);
        Assert.Equal(TimeSpan.FromSeconds(20), database.IdleLifetime);
        Assert.Equal(TimeSpan.FromMilliseconds(250), database.SlowQueryThreshold);
        Assert.Equal(TimeSpan.FromMilliseconds(250), host.Services.GetRequiredService<IOptions<DatabaseTelemetryOptions>>().Value.SlowQueryThreshold);

        var workspaces = host.Services.GetRequiredService<IOptions<WorkspacesOptions>>().Value;
        Assert.Equal(TimeSpan.FromMilliseconds(50), workspaces.RetryBaseDelay);
        Assert.Equal(TimeSpan.FromSeconds(1.5), workspaces.CircuitBreak);
        Assert.Equal(TimeSpan.FromSeconds(4), workspaces.ConnectTimeout);

        // The connection string says otherwise; a key set in the Database section (old name or new) wins over it.
        var configuration = host.Services.GetRequiredService<IConfiguration>();
        var connection = SystemDatabaseConnection.BuildDirect(configuration, "test");
        Assert.Equal(7, connection.Timeout);
        Assert.Equal(45, connection.CommandTimeout);
        Assert.Equal(20, connection.ConnectionIdleLifetime);
    }

    [Fact]
    public void New_keys_take_durations()
    {
        using var host = BuildHost(new()
        {
            ["Database:ConnectTimeout"] = "00:00:00.5",
            ["Database:SlowQueryThreshold"] = "00:00:00.120",
            ["Workspaces:IdleEviction"] = "00:02:00",
        });

        var configuration = host.Services.GetRequiredService<IConfiguration>();
        Assert.Equal(TimeSpan.FromMilliseconds(120), host.Services.GetRequiredService<IOptions<DatabaseOptions>>().Value.SlowQueryThreshold);
        Assert.Equal(TimeSpan.FromMinutes(2), host.Services.GetRequiredService<IOptions<WorkspacesOptions>>().Value.IdleEviction);
        // Npgsql counts whole seconds: half a second rounds up to 1 (0 would mean no limit).
        Assert.Equal(1, SystemDatabaseConnection.BuildDirect(configuration, "test").Timeout);
    }

    private static IHost BuildHost(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { EnvironmentName = "Development" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            [SystemDatabaseConnection.ConnectionStringKey] =
                "Host=127.0.0.1;Port=1;Database=tc_studio;Timeout=30;Command Timeout=300;Connection Idle Lifetime=300",
        });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddTcStudioData();
        builder.AddWorkspaceDatabases();
        return builder.Build();
    }

    private static void AssertOneLineNamingTheKey(ProcessResult result, string key)
    {
        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains($"{key}", line);
        Assert.DoesNotContain(NotEchoed, result.AllOutput);
        Assert.DoesNotContain("never-printed", result.AllOutput);
    }

    private static int Occurrences(string text, string part)
    {
        var count = 0;
        for (var index = text.IndexOf(part, StringComparison.Ordinal); index >= 0;
            index = text.IndexOf(part, index + part.Length, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }
}
