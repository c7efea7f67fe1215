using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase.Configuration;
using TcStudio.SystemDatabase.Seeding;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Registers the system database: a pooled DbContext over our own NpgsqlDataSource (the pool, Max Auto Prepare and the
/// <c>Database:*</c> settings applied by <see cref="SystemDatabaseConnection.Build"/>; the connection string read and
/// validated on first use, so <c>dotnet ef</c> works without one), retry on transient failures within
/// <c>Database:MaxRetryCount</c>/<c>MaxRetryDelay</c>, and the readiness check named after the context (a real round
/// trip plus "no migrations pending"). Aspire's client integration then enriches the context
/// (<c>EnrichNpgsqlDbContext</c>): Npgsql traces and metrics and <c>CommandTimeout</c>, from the settings under
/// <c>Aspire:Npgsql:EntityFrameworkCore:PostgreSQL</c>. Also the database telemetry every service has: the command
/// monitor (query durations, slow queries, connection logs) and the meter <c>TcStudio.Database</c>.
/// </summary>
public static class TcStudioDataExtensions
{
    public static IHostApplicationBuilder AddTcStudioData(this IHostApplicationBuilder builder)
    {
        // Bound once, checked at start (the start-up checks call the validator themselves for a one-line exit 2). The
        // renamed keys (…Seconds, …Ms) are still read and warned about once at start (RenamedKey).
        builder.Services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.SectionName)
            .PostConfigure<IConfiguration>((options, configuration) => SystemDatabaseConnection.Complete(options, configuration))
            .ValidateWith(DatabaseOptionsValidation.FindError)
            .ValidateOnStart();
        foreach (var renamed in DatabaseOptions.RenamedKeys) builder.Services.AddSingleton(renamed);
        builder.Services.AddOptions<SeedOptions>().BindConfiguration(SeedOptions.SectionName).ValidateOnStart();
        builder.Services.AddOptions<Activities.ActivityPartitionOptions>().BindConfiguration(Activities.ActivityPartitionOptions.SectionName)
            .ValidateWith(options => options.FindError()).ValidateOnStart();
        builder.Services.AddOptions<Security.SystemRoleOptions>().BindConfiguration(Security.SystemRoleOptions.SectionName)
            .ValidateWith(Security.SystemRoleOptions.FindError).ValidateOnStart();
        AddSshTunnelOptions(builder);

        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.TryAddSingleton<AuditTimestampsInterceptor>();
        AddDatabaseTelemetry(builder);

        var applicationName = builder.Environment.ApplicationName;
        builder.Services.TryAddSingleton(sp =>
        {
            // Built on first use, not at registration: a missing connection string surfaces when something
            // actually needs the database, and never at EF design time. With several hosts: the primary and
            // standbys (SystemDatabaseSources); everything uses the primary unless routed to a standby.
            var configuration = sp.GetRequiredService<IConfiguration>();
            var connectionString = EF.IsDesignTime && SystemDatabaseConnection.ReadConnectionString(configuration) is null
                ? "Host=localhost;Database=tc_studio"
                : SystemDatabaseConnection.Build(configuration, applicationName).ConnectionString;
            var dataSource = new NpgsqlDataSourceBuilder(connectionString)
            {
                Name = SystemDatabaseConnection.ConnectionName,
            };
            dataSource.UseLoggerFactory(sp.GetRequiredService<ILoggerFactory>());
            sp.GetRequiredService<NpgsqlActivityMonitor>()
                .DescribeDataSource(SystemDatabaseConnection.ConnectionName, dataSource.ConnectionStringBuilder);
            return new SystemDatabaseSources(dataSource);
        });
        builder.Services.TryAddSingleton(sp => sp.GetRequiredService<SystemDatabaseSources>().Primary);

        // Read from Aspire's settings by EnrichNpgsqlDbContext below, before any context is created.
        var retry = true;
        builder.Services.AddDbContextPool<TcStudioDbContext>((sp, options) =>
        {
            var database = sp.GetRequiredService<IOptions<DatabaseOptions>>().Value;
            options.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>(), npgsql =>
            {
                npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable);
                // A retrying strategy of our own (never retries our own timeouts): Aspire keeps it rather than adding its
                // defaults (6 tries / 30 s).
                if (retry)
                {
                    npgsql.ExecutionStrategy(dependencies =>
                        new TcStudioExecutionStrategy(dependencies, Math.Max(0, database.MaxRetryCount), database.MaxRetryDelay));
                }
            });
            ConfigureContext(options);
            options.AddInterceptors(sp.GetRequiredService<AuditTimestampsInterceptor>());
        });

        var healthCheck = true;
        builder.EnrichNpgsqlDbContext<TcStudioDbContext>(settings =>
        {
            retry = !settings.DisableRetry;
            healthCheck = !settings.DisableHealthChecks;
            // Aspire's check (CanConnect, also named TcStudioDbContext) is replaced by ours, which also says whether
            // migrations are pending and clears a pool whose server went away.
            settings.DisableHealthChecks = true;
        });

        builder.Services.TryAddSingleton<SchemaReadiness>();
        builder.Services.TryAddSingleton<Activities.ActivityBulkWriter>();
        builder.Services.TryAddScoped<SystemDatabaseMigrator>();
        builder.Services.TryAddScoped<SystemSeeder>();

        if (healthCheck)
        {
            // Only the system database: a dead workspace database must not take the service out of rotation.
            builder.Services.AddHealthChecks().AddCheck<SystemDatabaseHealthCheck>(SystemDatabaseHealthCheck.Name);
        }
        // Listed in /health only where a tunnel is configured, so hosts without one keep their report unchanged. One
        // check covers the system database's tunnel and the workspace servers' (WorkspaceServers:<name>:Ssh, read by
        // TcStudio.WorkspaceDatabases' WorkspaceServerRegistry): the tunnels are shared (Ssh/).
        if (Ssh.SshTunnelOptions.Read(
                builder.Configuration.GetSection($"{DatabaseOptions.SectionName}:{Ssh.SshTunnelOptions.SectionName}")) is not null
            || builder.Configuration.GetSection(Ssh.SshTunnels.WorkspaceServersSection).GetChildren()
                .Any(server => server.GetSection(Ssh.SshTunnelOptions.SectionName).Exists()))
        {
            builder.Services.AddHealthChecks().AddCheck<Ssh.SshTunnelHealthCheck>(Ssh.SshTunnelHealthCheck.Name);
        }
        return builder;
    }

    /// <summary>
    /// Each configured tunnel (<c>Database:Ssh</c>, <c>WorkspaceServers:&lt;name&gt;:Ssh</c> with a <c>Host</c>) as named
    /// options checked at start, so a tunnel without a user or key stops the process at once with one line naming the
    /// key, not at the first connection. The tunnels themselves read the same sections (<see cref="Ssh.SshTunnels"/>).
    /// </summary>
    private static void AddSshTunnelOptions(IHostApplicationBuilder builder)
    {
        var sections = builder.Configuration.GetSection(Ssh.SshTunnels.WorkspaceServersSection).GetChildren()
            .Select(server => server.GetSection(Ssh.SshTunnelOptions.SectionName))
            .Prepend(builder.Configuration.GetSection($"{DatabaseOptions.SectionName}:{Ssh.SshTunnelOptions.SectionName}"));
        foreach (var section in sections.Where(section => !string.IsNullOrWhiteSpace(section["Host"])))
        {
            var path = section.Path;
            builder.Services.AddOptions<Ssh.SshTunnelOptions>(path).BindConfiguration(path)
                .PostConfigure(options => options.ConfigurationPath = path)
                .ValidateWith(options => options.FindError()).ValidateOnStart();
        }
    }

    /// <summary>
    /// The command monitor starts with the host (before any verb or request runs) and sees every Npgsql command of
    /// the process. Its meter is ours, not the client integration's, so DisableMetrics leaves it on.
    /// </summary>
    private static void AddDatabaseTelemetry(IHostApplicationBuilder builder)
    {
        builder.Services.TryAddSingleton<DatabaseMetrics>();
        // The same keys as DatabaseOptions (which extends DatabaseTelemetryOptions), for the command monitor.
        builder.Services.AddOptions<DatabaseTelemetryOptions>().BindConfiguration(DatabaseOptions.SectionName)
            .PostConfigure<IConfiguration>((options, configuration) =>
                RenamedKey.ApplyAll(options, configuration, DatabaseOptions.RenamedKeys))
            .ValidateWith(options =>
                options.SlowQueryThreshold < TimeSpan.Zero ? $"{DatabaseOptions.SectionName}:SlowQueryThreshold must not be negative."
                : options.SlowQueryLogCapacity < 0 ? $"{DatabaseOptions.SectionName}:SlowQueryLogCapacity must be 0 or more."
                : null)
            .ValidateOnStart();
        builder.Services.TryAddSingleton(sp =>
            new SlowQueryLog(sp.GetRequiredService<IOptions<DatabaseOptions>>().Value.SlowQueryLogCapacity));
        builder.Services.TryAddSingleton<NpgsqlActivityMonitor>();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, NpgsqlActivityMonitor>(
            sp => sp.GetRequiredService<NpgsqlActivityMonitor>()));
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(DatabaseMetrics.MeterName, Ssh.SshTunnels.MeterName));
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, Ssh.SshTunnelLogging>());
    }

    /// <summary>Options shared by the runtime registration and the design-time factory.</summary>
    internal static void ConfigureContext(DbContextOptionsBuilder options) =>
        options.UseSnakeCaseNamingConvention()
            // Children of a soft-deleted workspace or user are reached through it, so the filter hides them too.
            .ConfigureWarnings(w => w.Ignore(CoreEventId.PossibleIncorrectRequiredNavigationWithQueryFilterInteractionWarning));
}
