using Microsoft.Extensions.Options;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// With Database:MigrateOnStartup=true the API applies pending migrations itself before it serves requests, under
/// the same advisory lock the migration worker takes, so an API and a worker started together never both migrate.
/// Off by default: the worker owns the schema, and the API's role should not need DDL rights.
/// </summary>
public sealed class MigrateOnStartup(IServiceScopeFactory scopes, IConfiguration configuration, IOptions<DatabaseOptions> options,
    SchemaReadiness readiness, ILogger<MigrateOnStartup> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.MigrateOnStartup) return;
        await using var migrationLock = await MigrationLock.AcquireAsync(
            SystemDatabaseConnection.Build(configuration, "tcstudio-api-migrate"), logger, cancellationToken);
        await using var scope = scopes.CreateAsyncScope();
        var migrator = scope.ServiceProvider.GetRequiredService<SystemDatabaseMigrator>();
        var steps = await migrator.MigrateAsync(target: null,
            step => logger.LogInformation("Applied migration {Migration} in {Milliseconds:0} ms", step.Id, step.Duration.TotalMilliseconds),
            cancellationToken);
        logger.LogInformation("Database:MigrateOnStartup applied {Count} migration(s)", steps.Count);
        readiness.MarkReady();
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
