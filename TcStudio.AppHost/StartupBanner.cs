using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TcStudio.AppHost.Postgres;
using TcStudio.LocalPostgres;

namespace TcStudio.AppHost;

/// <summary>
/// Once the API is healthy, says in one block where everything is: the dashboard (with its login link), the API,
/// its Scalar reference and OpenAPI document, where the seeded users' passwords are, and which PostgreSQL runs.
/// Never a password.
/// </summary>
public static class StartupBanner
{
    public const string RunningLine = "TC Studio is running: API ";

    public static void PrintWhenReady(IDistributedApplicationBuilder builder, IResourceBuilder<ProjectResource> api,
        SystemDatabase database, IReadOnlyList<string> seedPasswordParameters)
    {
        var sinceStart = Stopwatch.StartNew();
        builder.Eventing.Subscribe<ResourceReadyEvent>(api.Resource, async (ready, cancellationToken) =>
        {
            var url = api.GetEndpoint("http").Url.TrimEnd('/');
            var postgres = database.Settings.Mode switch
            {
                PostgresMode.Local when database.Server.Resource is LocalPostgresServerResource local
                    && local.Running.IsCompletedSuccessfully =>
                    $"private cluster in {local.Running.Result.StateDirectory}, 127.0.0.1:{local.Running.Result.Port}; psql: "
                    + LocalPostgresLayout.PsqlCommand(local.Running.Result, SystemDatabaseExtensions.DatabaseName),
                PostgresMode.Container => "Aspire's PostgreSQL container, data in a volume",
                _ => "the server in ConnectionStrings:postgres",
            };
            var logger = ready.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TcStudio.AppHost");
            logger.LogInformation("""
                {RunningLine}{Url} (ready in {Seconds:0.0} s)
                  Dashboard:             {Dashboard}
                  Scalar API reference:  {Url}/scalar
                  OpenAPI document:      {Url}/openapi/v1.json
                  Health:                {Url}/health
                """
                + "\n  Seeded users admin and user: passwords in the parameters {Parameters} (dashboard, Parameters; or dotnet user-secrets list "
                + "--project TcStudio.AppHost); they are set when the users are first seeded\n"
                + """
                  PostgreSQL ({Reason}): {Postgres}
                Press Ctrl+C to stop.
                """, RunningLine, url, sinceStart.Elapsed.TotalSeconds, DashboardLogin(builder.Configuration), url, url, url,
                string.Join(" and ", seedPasswordParameters), database.Settings.Reason, postgres);
            await Task.CompletedTask;
        });
    }

    /// <summary>The dashboard's address with its login token, as Aspire itself prints it; "off" under the test builder.</summary>
    private static string DashboardLogin(IConfiguration configuration)
    {
        var address = configuration["ASPNETCORE_URLS"]?.Split(';', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        if (address is null) return "off";
        return configuration["AppHost:BrowserToken"] is { Length: > 0 } token ? $"{address.TrimEnd('/')}/login?t={token}" : address;
    }
}
