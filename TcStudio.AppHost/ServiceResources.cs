using TcStudio.AppHost.Postgres;

namespace TcStudio.AppHost;

public static class ServiceResources
{
    /// <summary>
    /// The API's endpoints in the dashboard: the API itself, its Scalar reference and its OpenAPI document, for every
    /// http(s) endpoint it has.
    /// </summary>
    public static IResourceBuilder<ProjectResource> WithApiReferenceUrls(this IResourceBuilder<ProjectResource> api) =>
        api.WithUrls(context =>
        {
            foreach (var url in context.Urls.Where(u => u.Endpoint is not null).ToList())
            {
                var scheme = url.Endpoint!.EndpointName;
                url.DisplayText = $"API ({scheme})";
                context.Urls.Add(new ResourceUrlAnnotation
                {
                    Url = $"{url.Url.TrimEnd('/')}/scalar", DisplayText = $"Scalar API reference ({scheme})", Endpoint = url.Endpoint,
                });
                context.Urls.Add(new ResourceUrlAnnotation
                {
                    Url = $"{url.Url.TrimEnd('/')}/openapi/v1.json", DisplayText = $"OpenAPI document ({scheme})", Endpoint = url.Endpoint,
                });
            }
        });

    /// <summary>
    /// A project without a launch profile of its own (the worker) gets no environment name from Aspire, which would
    /// make it Production; in run mode it runs in the AppHost's environment, like the API under its launch profile.
    /// </summary>
    public static IResourceBuilder<ProjectResource> WithRunEnvironment(
        this IResourceBuilder<ProjectResource> project, IDistributedApplicationBuilder builder) =>
        builder.ExecutionContext.IsRunMode
            ? project.WithEnvironment("DOTNET_ENVIRONMENT", builder.Environment.EnvironmentName)
            : project;

    /// <summary>
    /// Backups on the application model: the worker knows where backups and the WAL archive go (so `backup` verbs run
    /// against this system find them), the archive directory exists before the cluster archives into it, and with a
    /// schedule a long-lived <c>backup-scheduler</c> (the worker's <c>backup --schedule</c>) runs after the migration
    /// worker, exporting <c>tcstudio.backup.last_success</c> to the dashboard.
    /// </summary>
    public static void AddBackups(this IDistributedApplicationBuilder builder, BackupSettings backups, SystemDatabase postgres,
        IResourceBuilder<ProjectResource> worker, IResourceBuilder<ParameterResource> ownerPassword,
            IResourceBuilder<ParameterResource> backupPassword)
    {
        IResourceBuilder<ProjectResource> WithBackupSettings(IResourceBuilder<ProjectResource> project)
        {
            // pg_dump reads as the backup role (read-only, BYPASSRLS), never as the owner or the admin.
            project.WithEnvironment("ConnectionStrings__backup", postgres.ConnectionStringAs(SystemRoles.Backup, backupPassword));
            project.WithEnvironment("Backup__Directory", backups.Directory);
            if (backups.WalArchive is not null) project.WithEnvironment("Backup__WalArchive", backups.WalArchive);
            return project;
        }

        if (backups.WalArchive is not null && builder.ExecutionContext.IsRunMode)
        {
            TcStudio.LocalPostgres.WalArchive.PrepareDirectory(backups.WalArchive);
        }
        WithBackupSettings(worker);
        if (backups.Schedule is null) return;

        string[] arguments = backups.Base ? ["backup", "--base", "--schedule", backups.Schedule] : ["backup", "--schedule", backups.Schedule];
        var scheduler = WithBackupSettings(builder.AddProject<Projects.TcStudio_MigrationWorker>(BackupSettings.SchedulerResourceName)
            .WithArgs(arguments)
            .WithSystemDatabase(postgres, SystemRoles.Owner, ownerPassword)
            .WaitForCompletion(worker)
            .WithRunEnvironment(builder));
        // pg_basebackup needs the REPLICATION right, which of the logins here only the server's admin has.
        if (backups.Base) scheduler.WithServerAdmin(postgres);
    }
}
