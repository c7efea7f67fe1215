using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TcStudio.SystemDatabase;

namespace TcStudio.Tests.Observability.Support;

/// <summary>
/// A host registered the way the API registers the database (service defaults, AddTcStudioData,
/// AddDatabaseInsights), built but not started unless the test starts it, with its logs kept.
/// </summary>
public static class DataHost
{
    public static IHost Build(string connectionString, LogSink? logs = null, IReadOnlyDictionary<string, string?>? settings = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { EnvironmentName = "Development" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            [SystemDatabaseConnection.ConnectionStringKey] = connectionString,
        });
        if (settings is not null) builder.Configuration.AddInMemoryCollection(settings);
        if (logs is not null) builder.Logging.AddProvider(logs);
        builder.AddServiceDefaults();
        builder.AddTcStudioData();
        builder.AddDatabaseInsights();
        return builder.Build();
    }

    /// <summary>Applies every migration to a database (for databases on private clusters, which have no template).</summary>
    public static async Task MigrateAsync(string connectionString)
    {
        var options = new DbContextOptionsBuilder<TcStudioDbContext>()
            .UseNpgsql(connectionString, npgsql => npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable));
        TcStudioDataExtensions.ConfigureContext(options);
        await using var db = new TcStudioDbContext(options.Options);
        await db.Database.MigrateAsync();
    }

    public static async Task<T> InScopeAsync<T, TService>(this IHost host, Func<TService, Task<T>> use) where TService : notnull
    {
        await using var scope = host.Services.CreateAsyncScope();
        return await use(scope.ServiceProvider.GetRequiredService<TService>());
    }
}
