using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using TcStudio.DatabaseTelemetry;
using TcStudio.SystemDatabase.Insights;

namespace TcStudio.SystemDatabase;

public static class DatabaseInsightsExtensions
{
    /// <summary>
    /// What the database-insights API needs, for the API only (after <see cref="TcStudioDataExtensions.AddTcStudioData"/>):
    /// the size sampler (a background service; one per deployment is enough, so the worker does not run it), the
    /// pool-figures reader, and one service per insights view.
    /// </summary>
    public static IHostApplicationBuilder AddDatabaseInsights(this IHostApplicationBuilder builder)
    {
        builder.Services.TryAddSingleton<NpgsqlPoolMetrics>();
        // Constructed at start so the pool counters (timeouts, waits, opens) count from the beginning.
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, NpgsqlPoolMetrics>(
            sp => sp.GetRequiredService<NpgsqlPoolMetrics>()));

        builder.Services.TryAddSingleton<DatabaseSizeSampler>();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, DatabaseSizeSampler>(
            sp => sp.GetRequiredService<DatabaseSizeSampler>()));

        builder.Services.TryAddScoped<OverviewInsights>();
        builder.Services.TryAddScoped<SlowQueryInsights>();
        builder.Services.TryAddScoped<TableInsights>();
        builder.Services.TryAddScoped<IndexInsights>();
        builder.Services.TryAddScoped<LongRunningQueryInsights>();
        return builder;
    }

}
