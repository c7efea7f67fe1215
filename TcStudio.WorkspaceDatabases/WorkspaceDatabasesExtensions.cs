using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TcStudio.SystemDatabase.Configuration;
using TcStudio.WorkspaceDatabases.Postgres;
using TcStudio.WorkspaceDatabases.SqlServer;

namespace TcStudio.WorkspaceDatabases;

public static class WorkspaceDatabasesExtensions
{
    /// <summary>
    /// The workspace-database layer: registered servers, both providers, the claims and their secrets, the connection
    /// cache, the service and the environment use cases the API and worker use, and its metrics (meter
    /// <see cref="WorkspaceDatabaseMetrics.MeterName"/>).
    /// </summary>
    public static IHostApplicationBuilder AddWorkspaceDatabases(this IHostApplicationBuilder builder)
    {
        // Bound once and checked at start; the renamed keys (…Seconds, …Milliseconds) are still read and warned about.
        builder.Services.AddOptions<WorkspacesOptions>().BindConfiguration(WorkspacesOptions.SectionName)
            .PostConfigure<Microsoft.Extensions.Configuration.IConfiguration>((options, configuration) =>
                TcStudio.SystemDatabase.Configuration.RenamedKey.ApplyAll(options, configuration, WorkspacesOptions.RenamedKeys))
            .ValidateWith(WorkspacesOptions.FindError)
            .ValidateOnStart();
        foreach (var renamed in WorkspacesOptions.RenamedKeys) builder.Services.AddSingleton(renamed);
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddMetrics();
        builder.Services.TryAddSingleton<WorkspaceServerRegistry>();
        builder.Services.TryAddSingleton<TcStudio.SystemDatabase.Seeding.IDefaultWorkspaceServer>(
            sp => sp.GetRequiredService<WorkspaceServerRegistry>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IWorkspaceDatabaseProvider, PostgresWorkspaceProvider>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IWorkspaceDatabaseProvider, SqlServerWorkspaceProvider>());
        builder.Services.TryAddSingleton<WorkspaceDatabaseMetrics>();
        builder.Services.TryAddSingleton<WorkspaceSecrets>();
        builder.Services.TryAddSingleton<WorkspaceOwnershipStore>();
        builder.Services.TryAddSingleton<IWorkspaceOwnershipSource>(sp => sp.GetRequiredService<WorkspaceOwnershipStore>());
        builder.Services.TryAddSingleton<WorkspaceConnectionCache>();
        builder.Services.TryAddSingleton<WorkspaceDatabaseService>();
        builder.Services.TryAddScoped<EnvironmentProvisioning>();
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(WorkspaceDatabaseMetrics.MeterName));
        builder.Services.AddHostedService<WorkspaceServersReport>();
        return builder;
    }

    /// <summary>Says at start which servers are registered and which entries are wrong (names keys, never secrets).</summary>
    private sealed class WorkspaceServersReport(WorkspaceServerRegistry servers, ILogger<WorkspaceServersReport> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            foreach (var error in servers.ConfigurationErrors) logger.LogError("Workspace server ignored: {Error}", error);
            foreach (var error in servers.TunnelErrors) logger.LogError("Workspace server unreachable until its tunnel opens: {Error}", error);
            foreach (var server in servers.Servers.Where(s => s.ExecuteConnectionString is not null))
            {
                // Executions run as each database's own user without login now; a shared login would reach every database.
                logger.LogWarning("WorkspaceServers:{Server}:ExecuteConnectionString is no longer used: procedures run as each workspace "
                    + "database's own execute user (README, Isolation). Drop that login's users from the workspace databases, then the login.",
                        server.Name);
            }
            logger.LogDebug("Workspace servers: {Servers}", string.Join(", ", servers.Servers));
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
