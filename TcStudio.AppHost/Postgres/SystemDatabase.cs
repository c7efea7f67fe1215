using Aspire.Hosting.ApplicationModel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace TcStudio.AppHost.Postgres;

/// <summary>
/// The PostgreSQL server (<c>postgres</c>) and the system database on it (<c>tcstudio</c>, database <c>tc_studio</c>),
/// whichever way the server is provided. Every way gives a service that references <see cref="Database"/> the same
/// <c>ConnectionStrings__tcstudio</c> (Host, Port, Username, Password, Database); referencing <see cref="Server"/>
/// gives the server's admin connection string as <c>ConnectionStrings__postgres</c>.
/// </summary>
public sealed record SystemDatabase(
    PostgresSettings Settings,
    IResourceBuilder<IResourceWithConnectionString> Server,
    IResourceBuilder<IResourceWithConnectionString> Database);

public static class SystemDatabaseExtensions
{
    public const string ServerResourceName = PostgresSettings.ServerConnectionName;
    public const string DatabaseResourceName = "tcstudio";
    public const string DatabaseName = "tc_studio";

    public static SystemDatabase AddSystemDatabase(this IDistributedApplicationBuilder builder, PostgresSettings settings)
    {
        switch (settings.Mode)
        {
            case PostgresMode.Container:
            {
                var server = builder.AddPostgres(ServerResourceName)
                    .WithDataVolume()
                    // The database insights read pg_stat_statements; the image's entrypoint passes these to postgres.
                    .WithArgs("-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=all");
                return new SystemDatabase(settings, server, server.AddDatabase(DatabaseResourceName, DatabaseName));
            }
            case PostgresMode.Local:
            {
                var server = builder.AddLocalPostgres(ServerResourceName, settings.Local);
                return new SystemDatabase(settings, server, server.AddDatabase(DatabaseResourceName, DatabaseName));
            }
            default:
                return AddExistingServer(builder, settings);
        }
    }

    /// <summary>
    /// ConnectionStrings:postgres names the server (a secret parameter: in publish mode, an input of the deployment);
    /// the system database's connection string is the same with <c>Database=tc_studio</c>. The worker creates the
    /// database when it is missing, so readiness here is the server answering.
    /// </summary>
    private static SystemDatabase AddExistingServer(IDistributedApplicationBuilder builder, PostgresSettings settings)
    {
        var connectionString = builder.AddParameterFromConfiguration(
                "postgres-connection-string", $"ConnectionStrings:{ServerResourceName}", secret: true)
            .WithDescription("The existing PostgreSQL server's connection string (a superuser, or the owner of tc_studio).");
        var server = builder.AddConnectionString(ServerResourceName, ReferenceExpression.Create($"{connectionString}"));
        var database = builder.AddConnectionString(DatabaseResourceName,
            ReferenceExpression.Create($"{server.Resource};Database={DatabaseName}"));

        var healthCheck = $"{ServerResourceName}_check";
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(
            healthCheck, _ => new ServerAnswersHealthCheck(server.Resource), failureStatus: null, tags: null));
        server.WithHealthCheck(healthCheck);
        database.WithHealthCheck(healthCheck);
        return new SystemDatabase(settings, server, database);
    }

    /// <summary>
    /// Worker and API alike: the system database, after the server and the database answer. References give the
    /// connection string only (<c>ConnectionStrings__name</c>), not Aspire's extra TCSTUDIO_HOST/_PASSWORD/_URI
    /// variables: the services read nothing else, and a password is better in one variable than in four.
    /// </summary>
    public static IResourceBuilder<T> WithSystemDatabase<T>(this IResourceBuilder<T> service, SystemDatabase database)
        where T : IResourceWithEnvironment, IResourceWithWaitSupport =>
        service.WithAnnotation(new ReferenceEnvironmentInjectionAnnotation(ReferenceEnvironmentInjectionFlags.ConnectionString))
            .WithReference(database.Database).WaitFor(database.Server).WaitFor(database.Database);

    private sealed class ServerAnswersHealthCheck(IResourceWithConnectionString server) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                var builder = new NpgsqlConnectionStringBuilder(await server.GetConnectionStringAsync(cancellationToken))
                {
                    Pooling = false,
                    Timeout = 3,
                };
                await using var connection = new NpgsqlConnection(builder.ConnectionString);
                await connection.OpenAsync(cancellationToken);
                return HealthCheckResult.Healthy();
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName)
            {
                return HealthCheckResult.Healthy("the server answers; its database is created by the migration worker");
            }
            catch (Exception e) when (e is NpgsqlException or ArgumentException or TimeoutException or OperationCanceledException)
            {
                // Never the message of a connection-string error: it may quote the value.
                return HealthCheckResult.Unhealthy(e is PostgresException pg ? $"{pg.SqlState} {pg.MessageText}" : "the server does not answer");
            }
        }
    }
}
