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
    IResourceBuilder<IResourceWithConnectionString> Database)
{
    /// <summary>
    /// The system database's connection string signed in as <paramref name="role"/> rather than the server's admin:
    /// what each service gets (the admin string goes to the worker's <c>roles</c> step only).
    /// </summary>
    /// <param name="withStandbys">
    /// For a service whose reads may come from a standby (the API): the local cluster's standbys are listed after it
    /// (<c>AppHost:Postgres:Replicas</c>); an existing server's string keeps whatever hosts it names.
    /// </param>
    public ReferenceExpression ConnectionStringAs(string role, IResourceBuilder<ParameterResource> password, bool withStandbys = false)
        => Server.Resource switch
    {
        LocalPostgresServerResource { Replicas: > 0 } local when withStandbys => ReferenceExpression.Create(
            $"{local.ConnectionStringWithStandbysAs(role, password.Resource)};Database={SystemDatabaseExtensions.DatabaseName}"),
        PostgresServerResource container => ContainerConnectionString(container.PrimaryEndpoint, role, password.Resource),
        LocalPostgresServerResource local => ReferenceExpression.Create(
            $"{local.ConnectionStringAs(role, password.Resource)};Database={SystemDatabaseExtensions.DatabaseName}"),
        var existing => ReferenceExpression.Create(
            $"{new ConnectionStringWithLogin(existing, role, password.Resource)};Database={SystemDatabaseExtensions.DatabaseName}"),
    };

    /// <summary>A container's connection string: its endpoint's host and port, signed in as <paramref name="role"/>.</summary>
    private static ReferenceExpression ContainerConnectionString(EndpointReference endpoint, string role, ParameterResource password)
    {
        var host = endpoint.Property(EndpointProperty.Host);
        var port = endpoint.Property(EndpointProperty.Port);
        return ReferenceExpression.Create(
            $"Host={host};Port={port};Username={role};Password={password};Database={SystemDatabaseExtensions.DatabaseName}");
    }

    /// <summary>An existing server's connection string (a parameter) with another login: host, port and TLS kept.</summary>
    private sealed class ConnectionStringWithLogin(IResourceWithConnectionString server, string role, ParameterResource password)
        : IValueProvider, IManifestExpressionProvider, IValueWithReferences
    {
        // Run mode only: publishing with an existing server is refused at start (Program.Main), since a manifest cannot
        // rewrite the login inside a secret connection string.
        public string ValueExpression => $"{{{server.Name}.connectionString}}";

        public IEnumerable<object> References => [server, password];

        public async ValueTask<string?> GetValueAsync(CancellationToken cancellationToken = default)
        {
            var builder = new NpgsqlConnectionStringBuilder(await server.GetConnectionStringAsync(cancellationToken))
            {
                Username = role,
                Password = await password.GetValueAsync(cancellationToken),
            };
            builder.Remove("Database");
            return builder.ConnectionString;
        }
    }
}

/// <summary>
/// The logins the AppHost gives the services: the worker's <c>roles</c> step creates the system database's roles
/// (its default names for <c>tc_studio</c>) and its workspace bootstrap creates the provisioner, with these passwords.
/// </summary>
public static class SystemRoles
{
    public const string Owner = SystemDatabaseExtensions.DatabaseName + "_owner";
    public const string App = SystemDatabaseExtensions.DatabaseName + "_app";
    public const string Backup = SystemDatabaseExtensions.DatabaseName + "_backup";
    public const string Provisioner = SystemDatabaseExtensions.DatabaseName + "_provisioner";
}

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
                var server = builder.AddLocalPostgres(ServerResourceName, settings.Local, settings.Replicas);
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
    /// A service signs in to the system database as <paramref name="role"/> (<see cref="SystemDatabase.ConnectionStringAs"/>),
    /// after the server and the database answer. It gets the connection string only (<c>ConnectionStrings__tcstudio</c>),
    /// not Aspire's extra TCSTUDIO_HOST/_PASSWORD/_URI variables: the services read nothing else, and a password is
    /// better in one variable than in four.
    /// </summary>
    public static IResourceBuilder<T> WithSystemDatabase<T>(this IResourceBuilder<T> service, SystemDatabase database, string role,
        IResourceBuilder<ParameterResource> password, bool withStandbys = false)
        where T : IResourceWithEnvironment, IResourceWithWaitSupport =>
        service.WithEnvironment($"ConnectionStrings__{DatabaseResourceName}", database.ConnectionStringAs(role, password, withStandbys))
            .WithReferenceRelationship(database.Database).WaitFor(database.Server).WaitFor(database.Database);

    /// <summary>The server's admin connection string (<c>ConnectionStrings__postgres</c>): the worker's bootstrap steps only.</summary>
    public static IResourceBuilder<T> WithServerAdmin<T>(this IResourceBuilder<T> service, SystemDatabase database)
        where T : IResourceWithEnvironment =>
        service.WithAnnotation(new ReferenceEnvironmentInjectionAnnotation(ReferenceEnvironmentInjectionFlags.ConnectionString))
            .WithReference(database.Server);

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
