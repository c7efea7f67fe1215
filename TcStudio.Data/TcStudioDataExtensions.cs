using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using TcStudio.Data.Seeding;
using TcStudio.Data.Telemetry;

namespace TcStudio.Data;

/// <summary>
/// Registers the system database the way Aspire's Npgsql EF client integration would: a pooled DbContext over one
/// NpgsqlDataSource, retry on transient failures, a health check named after the context (a real round trip plus
/// "no migrations pending"), Npgsql traces and metrics, with the connection string read and validated on first use
/// (so <c>dotnet ef</c> works without one). Also the database telemetry every service has: the command monitor
/// (query durations, slow queries, connection logs) and the meter <c>TcStudio.Database</c>.
/// </summary>
public static class TcStudioDataExtensions
{
    /// <summary>The settings an Aspire user may already have under Aspire:Npgsql:EntityFrameworkCore:PostgreSQL.</summary>
    public sealed class AspireNpgsqlSettings
    {
        public bool DisableRetry { get; set; }
        public bool DisableHealthChecks { get; set; }
        public bool DisableTracing { get; set; }
        public bool DisableMetrics { get; set; }
        public int? CommandTimeout { get; set; }
    }

    public static IHostApplicationBuilder AddTcStudioData(this IHostApplicationBuilder builder)
    {
        var aspire = new AspireNpgsqlSettings();
        builder.Configuration.GetSection(SystemDatabaseConnection.AspireSettingsSection).Bind(aspire);

        builder.Services.AddOptions<DatabaseOptions>()
            .Configure<IConfiguration>((options, configuration) =>
            {
                configuration.GetSection(DatabaseOptions.SectionName).Bind(options);
                options.Provider = SystemDatabaseConnection.ReadProvider(configuration);
            });
        builder.Services.AddOptions<SeedOptions>().BindConfiguration(SeedOptions.SectionName);

        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.TryAddSingleton<AuditTimestampsInterceptor>();
        AddDatabaseTelemetry(builder);

        var applicationName = builder.Environment.ApplicationName;
        builder.Services.TryAddSingleton(sp =>
        {
            // Built on first use, not at registration: a missing connection string surfaces when something
            // actually needs the database, and never at EF design time.
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
            return dataSource.Build();
        });

        builder.Services.AddDbContextPool<TcStudioDbContext>((sp, options) =>
        {
            var database = sp.GetRequiredService<IOptions<DatabaseOptions>>().Value;
            options.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>(), npgsql =>
            {
                npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable);
                if (aspire.CommandTimeout is { } timeout) npgsql.CommandTimeout(timeout);
                if (!aspire.DisableRetry)
                {
                    npgsql.ExecutionStrategy(dependencies =>
                        new TcStudioExecutionStrategy(dependencies, Math.Max(0, database.MaxRetryCount), database.MaxRetryDelay));
                }
            });
            ConfigureContext(options);
            options.AddInterceptors(sp.GetRequiredService<AuditTimestampsInterceptor>());
        });

        builder.Services.TryAddSingleton<SchemaReadiness>();
        builder.Services.TryAddSingleton<Activities.ActivityBulkWriter>();
        builder.Services.TryAddScoped<SystemDatabaseMigrator>();
        builder.Services.TryAddScoped<SystemSeeder>();

        if (!aspire.DisableHealthChecks)
        {
            // Only the system database: a dead workspace database must not take the service out of rotation.
            builder.Services.AddHealthChecks().AddCheck<SystemDatabaseHealthCheck>(SystemDatabaseHealthCheck.Name);
        }
        if (!aspire.DisableTracing)
        {
            builder.Services.AddOpenTelemetry().WithTracing(tracing => tracing.AddSource("Npgsql"));
        }
        if (!aspire.DisableMetrics)
        {
            builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter("Npgsql"));
        }
        return builder;
    }

    /// <summary>
    /// The command monitor starts with the host (before any verb or request runs) and sees every Npgsql command of
    /// the process. Its meter is ours, not the client integration's, so DisableMetrics leaves it on.
    /// </summary>
    private static void AddDatabaseTelemetry(IHostApplicationBuilder builder)
    {
        builder.Services.TryAddSingleton<DatabaseMetrics>();
        builder.Services.TryAddSingleton(sp =>
            new SlowQueryLog(sp.GetRequiredService<IOptions<DatabaseOptions>>().Value.SlowQueryLogCapacity));
        builder.Services.TryAddSingleton<NpgsqlActivityMonitor>();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, NpgsqlActivityMonitor>(
            sp => sp.GetRequiredService<NpgsqlActivityMonitor>()));
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(DatabaseMetrics.MeterName));
    }

    /// <summary>Options shared by the runtime registration and the design-time factory.</summary>
    internal static void ConfigureContext(DbContextOptionsBuilder options) =>
        options.UseSnakeCaseNamingConvention()
            // Children of a soft-deleted workspace or user are reached through it, so the filter hides them too.
            .ConfigureWarnings(w => w.Ignore(CoreEventId.PossibleIncorrectRequiredNavigationWithQueryFilterInteractionWarning));
}
