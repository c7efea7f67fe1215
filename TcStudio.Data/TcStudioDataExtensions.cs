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

namespace TcStudio.Data;

/// <summary>
/// Registers the system database the way Aspire's Npgsql EF client integration would: a pooled DbContext over one
/// NpgsqlDataSource, retry on transient failures, an EF health check named after the context, Npgsql traces and
/// metrics, with the connection string read and validated on first use (so <c>dotnet ef</c> works without one).
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
                    npgsql.EnableRetryOnFailure(Math.Max(0, database.MaxRetryCount), database.MaxRetryDelay, errorCodesToAdd: null);
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
            builder.Services.AddHealthChecks().AddDbContextCheck<TcStudioDbContext>(nameof(TcStudioDbContext));
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

    /// <summary>Options shared by the runtime registration and the design-time factory.</summary>
    internal static void ConfigureContext(DbContextOptionsBuilder options) =>
        options.UseSnakeCaseNamingConvention()
            // Children of a soft-deleted workspace or user are reached through it, so the filter hides them too.
            .ConfigureWarnings(w => w.Ignore(CoreEventId.PossibleIncorrectRequiredNavigationWithQueryFilterInteractionWarning));
}
