using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.AppHost;
using TcStudio.AppHost.Postgres;
using TcStudio.AppHost.SqlServer;

namespace TcStudio.Tests.AppHost;

/// <summary>The application model the AppHost builds for each way of providing PostgreSQL and SQL Server (nothing is started).</summary>
public sealed class AppHostModelTests
{
    private const string Repository = "/home/dev/src/tc-studio";

    [Theory]
    [InlineData(null, true, false, PostgresMode.Container)]
    [InlineData(null, false, false, PostgresMode.Local)]
    [InlineData("auto", false, true, PostgresMode.Container)]
    [InlineData("LOCAL", true, false, PostgresMode.Local)]
    [InlineData("local", false, true, PostgresMode.Container)]
    [InlineData("container", false, false, PostgresMode.Container)]
    public void Auto_takes_the_container_when_a_runtime_answers_and_the_local_binaries_otherwise(
        string? mode, bool runtimeAnswers, bool publishing, PostgresMode expected)
    {
        var settings = Read(publishing, runtimeAnswers, ("AppHost:Postgres:Mode", mode));

        Assert.Equal(expected, settings.Mode);
    }

    [Fact]
    public void The_runtime_is_only_asked_when_the_mode_is_auto_in_run_mode()
    {
        Read(publishMode: false, runtimeAnswers: () => throw new InvalidOperationException("asked"), ("AppHost:Postgres:Mode", "local"));
        Read(publishMode: true, runtimeAnswers: () => throw new InvalidOperationException("asked"));
        Assert.Throws<InvalidOperationException>(() => Read(publishMode: false, runtimeAnswers: () => throw new InvalidOperationException("asked")));
    }

    [Fact]
    public void The_local_cluster_lives_in_the_repository_or_under_var_lib_when_root_unless_configured()
    {
        var settings = Read(false, false, ("AppHost:Postgres:StateDirectory", "/tmp/my-cluster"), ("AppHost:Postgres:Port", "55440"));
        Assert.Equal("/tmp/my-cluster", settings.Local.StateDirectory);
        Assert.Equal(55440, settings.Local.Port);
        Assert.True(settings.Local.Durable);

        Assert.Equal("/home/dev/src/tc-studio/.tcstudio/postgres",
            LocalPostgres.LocalPostgresLayout.DefaultStateDirectory(Repository, runningAsRoot: false));
        Assert.Matches("^/var/lib/tcstudio/[0-9a-f]{12}$", LocalPostgres.LocalPostgresLayout.DefaultStateDirectory(Repository, runningAsRoot: true));
        Assert.NotEqual(LocalPostgres.LocalPostgresLayout.DefaultStateDirectory(Repository, true),
            LocalPostgres.LocalPostgresLayout.DefaultStateDirectory(Repository + "-2", true));
    }

    [Theory]
    [InlineData("AppHost:Postgres:Mode", "docker", "AppHost:Postgres:Mode")]
    [InlineData("AppHost:Postgres:Port", "70000", "AppHost:Postgres:Port")]
    [InlineData("AppHost:Postgres:Mode", "existing", "ConnectionStrings:postgres is not set")]
    [InlineData("AppHost:Postgres:Replicas", "4", "'AppHost:Postgres:Replicas' must be a whole number from 0 to 3")]
    [InlineData("AppHost:Postgres:Replicas", "one", "'AppHost:Postgres:Replicas' must be a whole number from 0 to 3")]
    public void Bad_configuration_is_one_line_naming_the_key(string key, string value, string expected)
    {
        var error = Assert.Throws<AppHostConfigurationException>(() => Read(false, false, (key, value)));

        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("container", "set AppHost:Postgres:Mode=local")]
    [InlineData("existing", "list its standbys in ConnectionStrings:postgres")]
    public void Replicas_are_standbys_of_the_local_cluster_only(string mode, string expected)
    {
        var error = Assert.Throws<AppHostConfigurationException>(() => Read(false, false,
            ("AppHost:Postgres:Mode", mode), ("AppHost:Postgres:Replicas", "1"), ("ConnectionStrings:postgres", "Host=db;Password=s3cret")));

        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public async Task With_replicas_the_api_alone_gets_the_standbys_in_its_connection_string()
    {
        await using var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>(
            ["--AppHost:Postgres:Mode=local", "--AppHost:Postgres:StateDirectory=/tmp/never-started", "--AppHost:Postgres:Replicas=2",
             "--AppHost:SqlServer:Mode=none"]);

        Assert.Equal(2, Assert.IsType<LocalPostgresServerResource>(Single(builder, "postgres")).Replicas);
        async Task<string> SystemDatabaseOfAsync(string service)
        {
            var variables = new Dictionary<string, object>();
            var context = new EnvironmentCallbackContext(new DistributedApplicationExecutionContext(DistributedApplicationOperation.Run), variables);
            foreach (var annotation in Single(builder, service).Annotations.OfType<EnvironmentCallbackAnnotation>())
            {
                await annotation.Callback(context);
            }
            return Assert.IsType<ReferenceExpression>(variables["ConnectionStrings__tcstudio"]).ValueExpression;
        }

        Assert.StartsWith("Host={postgres.hosts};Username=tc_studio_app;", await SystemDatabaseOfAsync("api"));
        Assert.StartsWith("Host=127.0.0.1;Port={postgres.port};Username=tc_studio_owner;", await SystemDatabaseOfAsync("migration-worker"));
    }

    [Theory]
    [InlineData("Host=db;Password=s3cret;Colour=blue", "is malformed")]
    [InlineData("Password=s3cret;Port=5432", "has no Host")]
    [InlineData("Host=db;Password=s3cret;Port=not-a-port", "is malformed")]
    public void A_bad_existing_server_connection_string_is_named_and_never_echoed(string connectionString, string expected)
    {
        var error = Assert.Throws<AppHostConfigurationException>(() =>
            Read(false, false, ("AppHost:Postgres:Mode", "existing"), ("ConnectionStrings:postgres", connectionString)));

        Assert.Contains($"ConnectionStrings:postgres {expected}", error.Message);
        Assert.DoesNotContain("s3cret", error.Message);
    }

    [Fact]
    public async Task An_existing_server_gives_the_services_the_system_database_on_it_and_waits_for_it_to_answer()
    {
        await using var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>(
        [
            "--AppHost:Postgres:Mode=existing", "--AppHost:SqlServer:Mode=none",
            "--ConnectionStrings:postgres=Host=db.internal;Port=5433;Username=owner;Password=s3cret",
            "--Parameters:tcstudio-owner-password=owner-pw", "--Parameters:tcstudio-app-password=app-pw",
            "--Parameters:tcstudio-provisioner-password=provisioner-pw",
        ]);

        var database = Assert.IsAssignableFrom<IResourceWithConnectionString>(Single(builder, "tcstudio"));
        var services = new NpgsqlConnectionStringBuilder(await database.GetConnectionStringAsync());
        Assert.Equal(("db.internal", 5433, "owner", "s3cret", "tc_studio"),
            (services.Host, services.Port, services.Username, services.Password, services.Database));
        Assert.Contains(Single(builder, "postgres").Annotations.OfType<HealthCheckAnnotation>(), a => a.Key == "postgres_check");
        AssertServicesReferenceAndWaitFor(builder, "tcstudio", "postgres");

        // Each service signs in as its own role on that server; only the worker gets the admin string (its roles step).
        var worker = await ResolvedEnvironmentAsync(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "migration-worker"));
        var api = await ResolvedEnvironmentAsync(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "api"));
        static string Login(string connectionString)
        {
            var parsed = new NpgsqlConnectionStringBuilder(connectionString);
            return $"{parsed.Username}:{parsed.Password}@{parsed.Host}:{parsed.Port}/{parsed.Database}";
        }
        Assert.Equal("tc_studio_owner:owner-pw@db.internal:5433/tc_studio", Login(worker["ConnectionStrings__tcstudio"]));
        Assert.Equal("owner:s3cret@db.internal:5433/", Login(worker["ConnectionStrings__postgres"]));
        Assert.Equal("tc_studio_app:app-pw@db.internal:5433/tc_studio", Login(api["ConnectionStrings__tcstudio"]));
        Assert.Equal("tc_studio_provisioner:provisioner-pw@db.internal:5433/tc_studio", Login(api["WorkspaceServers__local__ConnectionString"]));
        Assert.DoesNotContain(api.Values, value => value.Contains("s3cret"));
    }

    [Fact]
    public async Task The_container_mode_is_aspires_postgres_with_a_data_volume_pg_stat_statements_and_the_tc_studio_database()
    {
        await using var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>(
            ["--AppHost:Postgres:Mode=container", "--AppHost:SqlServer:Mode=container"]);

        var server = Assert.IsType<PostgresServerResource>(Single(builder, "postgres"));
        Assert.Contains(server.Annotations.OfType<ContainerMountAnnotation>(), m => m.Type == ContainerMountType.Volume);
        var database = Assert.IsType<PostgresDatabaseResource>(Single(builder, "tcstudio"));
        Assert.Equal("tc_studio", database.DatabaseName);
        Assert.Same(server, database.Parent);
        var sql = Assert.IsType<SqlServerContainerResource>(Single(builder, "sql"));
        Assert.Contains(sql.Annotations.OfType<HealthCheckAnnotation>(), a => a.Key == "sql_check");
        AssertServicesReferenceAndWaitFor(builder, "tcstudio", "postgres", "sql");
    }

    [Fact]
    public async Task The_local_mode_is_a_custom_resource_with_health_checks_and_no_sql_server_unless_configured()
    {
        await using var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>(
            ["--AppHost:Postgres:Mode=local", "--AppHost:Postgres:StateDirectory=/tmp/never-started", "--AppHost:SqlServer:Mode=auto",
             "--ConnectionStrings:sql=Server=sql.internal;User ID=sa;Password=x"]);

        var server = Assert.IsType<LocalPostgresServerResource>(Single(builder, "postgres"));
        Assert.Equal("/tmp/never-started", server.Options.StateDirectory);
        var database = Assert.IsType<LocalPostgresDatabaseResource>(Single(builder, "tcstudio"));
        Assert.Equal("tc_studio", database.DatabaseName);
        Assert.Contains(database.Annotations.OfType<HealthCheckAnnotation>(), a => a.Key == "tcstudio_check");
        // No runtime answers here (or auto would have chosen a container): ConnectionStrings:sql becomes the resource.
        Assert.IsAssignableFrom<IResourceWithConnectionString>(Single(builder, "sql"));
        AssertServicesReferenceAndWaitFor(builder, "tcstudio", "postgres", "sql");

        var api = builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "api");
        var waitsForWorker = api.Annotations.OfType<WaitAnnotation>().Single(w => w.Resource.Name == "migration-worker");
        Assert.Equal(WaitType.WaitForCompletion, waitsForWorker.WaitType);
        Assert.Contains(api.Annotations.OfType<HealthCheckAnnotation>(), a => a.Key.Contains("http", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Backups_archive_the_local_clusters_wal_and_a_schedule_adds_a_scheduler_after_the_worker()
    {
        var state = Path.Combine(Path.GetTempPath(), $"tcstudio-apphost-backups-{Guid.NewGuid():N}");
        try
        {
            await using var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>(
            [
                "--AppHost:Postgres:Mode=local", $"--AppHost:Postgres:StateDirectory={state}", "--AppHost:SqlServer:Mode=none",
                "--AppHost:Backup:WalArchive=true", "--AppHost:Backup:Base=true", "--AppHost:Backup:Schedule=0 3 * * *",
            ]);

            var archive = Path.Combine(state, "wal-archive");
            var server = Assert.IsType<LocalPostgresServerResource>(Single(builder, "postgres"));
            Assert.Equal("on", server.Options.Settings["archive_mode"]);
            Assert.Contains($"'{archive}/%f'", server.Options.Settings["archive_command"]);
            Assert.True(Directory.Exists(archive), "the archive directory exists before the cluster archives into it");

            var scheduler = builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "backup-scheduler");
            Assert.Equal(["backup", "--base", "--schedule", "0 3 * * *"], await ArgumentsAsync(scheduler));
            var waitsForWorker = scheduler.Annotations.OfType<WaitAnnotation>().Single(w => w.Resource.Name == "migration-worker");
            Assert.Equal(WaitType.WaitForCompletion, waitsForWorker.WaitType);
            Assert.Contains(scheduler.Annotations.OfType<ResourceRelationshipAnnotation>(),
                r => r.Resource.Name == "tcstudio" && r.Type == "Reference");
            foreach (var name in new[] { "backup-scheduler", "migration-worker" })
            {
                var environment = await EnvironmentAsync(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == name));
                Assert.Equal(archive, environment["Backup__WalArchive"]);
                Assert.Equal(Path.Combine(state, "backups"), environment["Backup__Directory"]);
            }
        }
        finally
        {
            if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
        }
    }

    [Fact]
    public async Task Without_backup_settings_nothing_is_archived_and_no_scheduler_runs()
    {
        await using var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>(
            ["--AppHost:Postgres:Mode=local", "--AppHost:Postgres:StateDirectory=/tmp/never-started", "--AppHost:SqlServer:Mode=none"]);

        var server = Assert.IsType<LocalPostgresServerResource>(Single(builder, "postgres"));
        Assert.False(server.Options.Settings.ContainsKey("archive_mode"));
        Assert.DoesNotContain(builder.Resources, r => r.Name == "backup-scheduler");
    }

    [Theory]
    [InlineData("container", "AppHost:Backup:WalArchive", "true", "needs the local cluster")]
    [InlineData("local", "AppHost:Backup:WalArchive", "yes", "must be true or false")]
    [InlineData("local", "AppHost:Backup:Schedule", "every night", "cron expression")]
    [InlineData("local", "AppHost:Backup:Base", "true", "needs AppHost:Backup:WalArchive=true")]
    public void Bad_backup_settings_are_one_line_naming_the_key(string mode, string key, string value, string expected)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection([KeyValuePair.Create<string, string?>(key, value)])
            .Build();
        var postgres = Read(false, false, ("AppHost:Postgres:Mode", mode));

        var error = Assert.Throws<AppHostConfigurationException>(() => BackupSettings.Read(configuration, postgres));

        Assert.Contains(key, error.Message);
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>The literal arguments a resource's annotations add (what DCP would pass).</summary>
    private static async Task<List<string>> ArgumentsAsync(IResource resource)
    {
        var arguments = new List<object>();
        foreach (var annotation in resource.Annotations.OfType<CommandLineArgsCallbackAnnotation>())
        {
            await annotation.Callback(new CommandLineArgsCallbackContext(arguments));
        }
        return arguments.Select(a => a.ToString()!).ToList();
    }

    /// <summary>The connection strings a resource's annotations set, resolved (parameters from configuration).</summary>
    private static async Task<Dictionary<string, string>> ResolvedEnvironmentAsync(IResource resource)
    {
        var variables = new Dictionary<string, object>();
        var context = new EnvironmentCallbackContext(new DistributedApplicationExecutionContext(DistributedApplicationOperation.Run), variables);
        foreach (var annotation in resource.Annotations.OfType<EnvironmentCallbackAnnotation>())
        {
            await annotation.Callback(context);
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var resolved = new Dictionary<string, string>();
        foreach (var (name, value) in variables.Where(v => v.Key.StartsWith("ConnectionStrings__", StringComparison.Ordinal)
                     || v.Key.EndsWith("__ConnectionString", StringComparison.Ordinal)))
        {
            resolved[name] = value switch
            {
                string text => text,
                IValueProvider provider => await provider.GetValueAsync(timeout.Token) ?? "",
                _ => value.ToString() ?? "",
            };
        }
        return resolved;
    }

    /// <summary>The literal environment variables a resource's annotations set (values that are plain strings).</summary>
    private static async Task<Dictionary<string, string>> EnvironmentAsync(IResource resource)
    {
        var variables = new Dictionary<string, object>();
        var context = new EnvironmentCallbackContext(new DistributedApplicationExecutionContext(DistributedApplicationOperation.Run), variables);
        foreach (var annotation in resource.Annotations.OfType<EnvironmentCallbackAnnotation>())
        {
            await annotation.Callback(context);
        }
        return variables.Where(v => v.Value is string).ToDictionary(v => v.Key, v => (string)v.Value);
    }

    private static void AssertServicesReferenceAndWaitFor(IDistributedApplicationTestingBuilder builder, string reference, params string[] waitsFor)
    {
        foreach (var name in new[] { "migration-worker", "api" })
        {
            var service = builder.Resources.OfType<ProjectResource>().Single(r => r.Name == name);
            Assert.Contains(service.Annotations.OfType<ResourceRelationshipAnnotation>(), r => r.Resource.Name == reference && r.Type == "Reference");
            foreach (var dependency in waitsFor)
            {
                Assert.Contains(service.Annotations.OfType<WaitAnnotation>(), w => w.Resource.Name == dependency);
            }
        }
    }

    private static IResource Single(IDistributedApplicationTestingBuilder builder, string name) =>
        Assert.Single(builder.Resources, r => r.Name == name);

    private static PostgresSettings Read(bool publishMode, bool runtimeAnswers, params (string Key, string? Value)[] settings) =>
        Read(publishMode, () => runtimeAnswers, settings);

    private static PostgresSettings Read(bool publishMode, Func<bool> runtimeAnswers, params (string Key, string? Value)[] settings)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, s.Value)))
            .Build();
        return PostgresSettings.Read(configuration, publishMode, Repository, runtimeAnswers);
    }
}
