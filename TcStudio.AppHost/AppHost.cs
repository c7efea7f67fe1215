using TcStudio.AppHost.Postgres;
using TcStudio.AppHost.SqlServer;

namespace TcStudio.AppHost;

// A namespaced entry point: the API's Program is the global one (WebApplicationFactory<Program> in the tests).
public static class Program
{
    /// <summary>The workspace server <c>local</c>'s identity (README, "Workspace databases", Servers).</summary>
    public const string LocalClusterIdentityKey = "WorkspaceServers:local:Identity";

    /// <summary>
    /// TC Studio's application model: PostgreSQL and the system database, SQL Server when there is one, the migration
    /// worker (migrate + seed, run to completion), then the API. README.md, "Run the system" and "Deploy with azd".
    /// </summary>
    public static int Main(string[] args)
    {
        var builder = DistributedApplication.CreateBuilder(args);
        try
        {
            var containerRuntimeAnswers = new Lazy<bool>(() => ContainerRuntimeProbe.Answers(ContainerRuntimeProbe.DefaultTimeout));
            var repositoryRoot = Path.GetFullPath(Path.Combine(builder.AppHostDirectory, ".."));

            var postgresSettings = PostgresSettings.Read(
                builder.Configuration, builder.ExecutionContext.IsPublishMode, repositoryRoot, () => containerRuntimeAnswers.Value);
            if (builder.ExecutionContext.IsPublishMode && postgresSettings.Mode == PostgresMode.Existing)
            {
                throw new AppHostConfigurationException(
                    $"Publishing with {PostgresSettings.ModeKey}=existing is not supported: each service's role connection string is derived from "
                    + $"ConnectionStrings:{PostgresSettings.ServerConnectionName} when the AppHost runs. Publish with the container, or deploy the "
                    + "services with their own connection strings (docs/security.md).");
            }
            var backups = BackupSettings.Read(builder.Configuration, postgresSettings);
            var postgres = builder.AddSystemDatabase(postgresSettings with { Local = backups.Apply(postgresSettings.Local) });
            var sql = builder.AddSqlServer(() => containerRuntimeAnswers.Value);

            var signingKey = builder.AddSecret("api-signing-key", "The API's token signing key (Auth:SigningKey).", minLength: 48);
            var adminPassword = builder.AddSecret("seed-admin-password",
                "Password of the seeded user 'admin' (Seed:AdminPassword), set when it is first seeded.");
            var userPassword = builder.AddSecret("seed-user-password",
                "Password of the seeded user 'user' (Seed:UserPassword), set when it is first seeded.");

            // Least privilege: each service signs in as its own role (docs/security.md). The worker alone gets the
            // server's admin string, for its roles and bootstrap steps, and creates the other logins with these passwords.
            var ownerPassword = builder.AddSecret("tcstudio-owner-password", $"Password of '{SystemRoles.Owner}' (migrations and seeding).",
                generatedAtDeployment: true);
            var appPassword = builder.AddSecret("tcstudio-app-password", $"Password of '{SystemRoles.App}' (the API).", generatedAtDeployment: true);
            var backupPassword = builder.AddSecret("tcstudio-backup-password", $"Password of '{SystemRoles.Backup}' (backups).",
                generatedAtDeployment: true);
            var provisionerPassword = builder.AddSecret("tcstudio-provisioner-password",
                $"Password of '{SystemRoles.Provisioner}' (creates workspace databases on server 'local').", generatedAtDeployment: true);
            var localWorkspaceServer = ("WorkspaceServers__local__ConnectionString",
                postgres.ConnectionStringAs(SystemRoles.Provisioner, provisionerPassword));

            var worker = builder.AddProject<Projects.TcStudio_MigrationWorker>("migration-worker")
                .WithSystemDatabase(postgres, SystemRoles.Owner, ownerPassword)
                .WithServerAdmin(postgres)
                .WithEnvironment("SystemRoles__AppPassword", appPassword)
                .WithEnvironment("SystemRoles__BackupPassword", backupPassword)
                .WithEnvironment(localWorkspaceServer.Item1, localWorkspaceServer.Item2)
                .WithEnvironment("Seed__AdminPassword", adminPassword)
                .WithEnvironment("Seed__UserPassword", userPassword)
                .WithRunEnvironment(builder);

            var api = builder.AddProject<Projects.TcStudio_Api>("api")
                .WithSystemDatabase(postgres, SystemRoles.App, appPassword, withStandbys: true)
                .WithEnvironment(localWorkspaceServer.Item1, localWorkspaceServer.Item2)
                .WithEnvironment("Auth__SigningKey", signingKey)
                .WaitForCompletion(worker) // migrations and seed first; a failed worker keeps the API from starting
                .FailWhenAFixedPortIsTaken(builder) // else /health could be answered by whoever holds the port
                .WithHttpHealthCheck("/health")
                .WithExternalHttpEndpoints()
                .WithApiReferenceUrls();

            if (postgres.Settings.Mode == PostgresMode.Local && postgres.Settings.Local.Port == 0
                && string.IsNullOrWhiteSpace(builder.Configuration[LocalClusterIdentityKey]))
            {
                // The local cluster takes a free port at each start, and a workspace database's claim is keyed by its
                // server's identity (host:port by default): without a stable identity the seeded twsbp/dev environment
                // would refuse its own database after every restart. One state directory is one physical cluster.
                var identity = $"postgres://tcstudio-local-cluster{postgres.Settings.Local.StateDirectory}";
                worker.WithEnvironment(LocalClusterIdentityKey.Replace(":", "__"), identity);
                api.WithEnvironment(LocalClusterIdentityKey.Replace(":", "__"), identity);
            }

            if (sql is not null)
            {
                worker.WithReference(sql).WaitFor(sql);
                api.WithReference(sql).WaitFor(sql);
            }
            builder.AddBackups(backups, postgres, worker, ownerPassword, backupPassword);

            StartupBanner.PrintWhenReady(builder, api, postgres, [adminPassword.Resource.Name, userPassword.Resource.Name]);
            builder.Build().Run();
            return 0;
        }
        catch (AppHostConfigurationException e)
        {
            Console.Error.WriteLine(e.Message);
            return AppHostSettings.BadConfigurationExitCode;
        }
    }
}
