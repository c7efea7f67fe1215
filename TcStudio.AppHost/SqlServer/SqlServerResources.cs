using Microsoft.Data.SqlClient;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace TcStudio.AppHost.SqlServer;

/// <summary>
/// SQL Server for workspace databases, as a container built from Aspire's generic container API (Aspire's own
/// SQL Server integration cannot be restored here). Its connection string has the shape Aspire's gives:
/// <c>Server=host,port;User ID=sa;Password=…;TrustServerCertificate=true</c>.
/// </summary>
public sealed class SqlServerContainerResource(string name, ParameterResource password) : ContainerResource(name), IResourceWithConnectionString
{
    public const string EndpointName = "tcp";

    public ParameterResource PasswordParameter { get; } = password;

    public EndpointReference PrimaryEndpoint => new(this, EndpointName);

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"Server={PrimaryEndpoint.Property(EndpointProperty.Host)},{PrimaryEndpoint.Property(EndpointProperty.Port)};User "
            + $"ID=sa;Password={PasswordParameter};TrustServerCertificate=true");
}

/// <summary>AppHost:SqlServer:Mode = auto | container | existing | none.</summary>
public static class SqlServerResources
{
    public const string ResourceName = "sql";
    public const string ModeKey = "AppHost:SqlServer:Mode";

    /// <summary>
    /// auto: a container when a container runtime answers (run mode), else ConnectionStrings:sql when configured, else
    /// none (the seeded environment then stays on PostgreSQL). container / existing force one; none leaves it out.
    /// In publish mode auto means ConnectionStrings:sql when configured (no runtime is asked).
    /// </summary>
    public static IResourceBuilder<IResourceWithConnectionString>? AddSqlServer(
        this IDistributedApplicationBuilder builder, Func<bool> containerRuntimeAnswers)
    {
        var configured = AppHostSettings.TryReadConnectionString(builder.Configuration, ResourceName, out _);
        var mode = AppHostSettings.ReadChoice(builder.Configuration, ModeKey, "auto", "container", "existing", "none") switch
        {
            "auto" when !builder.ExecutionContext.IsPublishMode && containerRuntimeAnswers() => "container",
            "auto" => configured ? "existing" : "none",
            var chosen => chosen,
        };
        switch (mode)
        {
            case "container":
                return AddSqlServerContainer(builder);
            case "existing":
                if (!configured && !builder.ExecutionContext.IsPublishMode)
                {
                    throw new AppHostConfigurationException($"{ModeKey} is 'existing' but ConnectionStrings:{ResourceName} is not set.");
                }
                return builder.AddConnectionString(ResourceName);
            default:
                return null;
        }
    }

    private static IResourceBuilder<SqlServerContainerResource> AddSqlServerContainer(IDistributedApplicationBuilder builder)
    {
        // SQL Server's password policy wants three of: lower, upper, digit, symbol.
        var password = ParameterResourceBuilderExtensions.CreateDefaultPasswordParameter(
            builder, $"{ResourceName}-password", minLower: 1, minUpper: 1, minNumeric: 1);
        var resource = new SqlServerContainerResource(ResourceName, password);

        var healthCheck = $"{ResourceName}_check";
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(
            healthCheck, _ => new SqlServerHealthCheck(resource), failureStatus: null, tags: null));

        return builder.AddResource(resource)
            .WithImage("mssql/server", "2022-latest")
            .WithImageRegistry("mcr.microsoft.com")
            .WithEndpoint(targetPort: 1433, name: SqlServerContainerResource.EndpointName, scheme: "tcp")
            .WithEnvironment("ACCEPT_EULA", "Y")
            .WithEnvironment(context => context.EnvironmentVariables["MSSQL_SA_PASSWORD"] = password)
            .WithVolume("tcstudio-sql-data", "/var/opt/mssql")
            .WithIconName("DatabaseMultiple")
            .WithHealthCheck(healthCheck);
    }

    private sealed class SqlServerHealthCheck(IResourceWithConnectionString server) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                var builder = new SqlConnectionStringBuilder(await server.GetConnectionStringAsync(cancellationToken))
                {
                    ConnectTimeout = 3,
                    Pooling = false,
                };
                await using var connection = new SqlConnection(builder.ConnectionString);
                await connection.OpenAsync(cancellationToken);
                await using var command = new SqlCommand("SELECT 1", connection);
                await command.ExecuteScalarAsync(cancellationToken);
                return HealthCheckResult.Healthy();
            }
            catch (Exception e) when (e is SqlException or InvalidOperationException or OperationCanceledException)
            {
                return HealthCheckResult.Unhealthy(e is SqlException sql ? $"SQL Server error {sql.Number}" : "SQL Server does not answer");
            }
        }
    }
}
