using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TcStudio.LocalPostgres;

namespace TcStudio.AppHost.Postgres;

/// <summary>
/// Runs the local PostgreSQL resources: starts each cluster when the application starts (initdb on the first run,
/// pg_ctl start after), creates its databases, streams postgres.log to the resource's console log, watches the
/// server process, and stops the cluster when the AppHost stops (after the services, on Ctrl+C, SIGTERM, or when a
/// test disposes the application). The dashboard sees it all through the resource's state and properties.
/// </summary>
/// <remarks>
/// The server is started with pg_ctl, so it is not a child of the AppHost: if the AppHost is killed outright
/// (SIGKILL) the server keeps running, and the next run finds it through postmaster.pid, adopts it and stops it on exit.
/// </remarks>
public sealed class LocalPostgresRunner(
    ResourceNotificationService notifications, ResourceLoggerService loggers, ILoggerFactory loggerFactory)
    : IHostedLifecycleService, IAsyncDisposable
{
    /// <summary>The AppHost's own console: starting, stopping and failing are said there too, not only in the dashboard.</summary>
    private readonly ILogger _console = loggerFactory.CreateLogger("TcStudio.AppHost.Postgres");

    private const string ResourceType = "PostgreSQL (local)";
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<RunningCluster> _running = [];
    private int _stopped;

    private sealed class RunningCluster(LocalPostgresServerResource resource, LocalPostgresCluster cluster, StateDirectoryLock stateLock)
    {
        public LocalPostgresServerResource Resource { get; } = resource;
        public LocalPostgresCluster Cluster { get; } = cluster;
        public StateDirectoryLock Lock { get; } = stateLock;
        public List<LocalPostgresCluster> Standbys { get; } = [];
        public Task Tail { get; set; } = Task.CompletedTask;
        public Task Watch { get; set; } = Task.CompletedTask;
    }

    public static CustomResourceSnapshot InitialState(string resourceType = ResourceType) => new()
    {
        ResourceType = resourceType,
        State = KnownResourceStates.NotStarted,
        Properties = [],
    };

    /// <summary>Brings the cluster up; called once, when Aspire initializes the resource.</summary>
    public async Task RunAsync(LocalPostgresServerResource server, InitializeResourceEvent initialize, CancellationToken cancellationToken)
    {
        var log = initialize.Logger;
        try
        {
            await initialize.Eventing.PublishAsync(new BeforeResourceStartedEvent(server, initialize.Services), cancellationToken);
            await PublishAsync(server, s => s with { State = KnownResourceStates.Starting });

            var cluster = new LocalPostgresCluster(server.Options);
            var stateLock = StateDirectoryLock.TryAcquire(cluster.StateDirectory)
                ?? throw new InvalidOperationException(
                    $"Another AppHost is running with the PostgreSQL state directory {cluster.StateDirectory}. Stop it first, "
                    + $"or give this one a directory of its own ({PostgresSettings.StateDirectoryKey}).");
            var running = new RunningCluster(server, cluster, stateLock);
            var exists = File.Exists(Path.Combine(cluster.DataDirectory, "PG_VERSION"));
            foreach (var logger in new[] { log, _console })
            {
                logger.LogInformation(exists
                    ? "Starting the private cluster in {StateDirectory}"
                    : "Creating a private cluster in {StateDirectory} (first run)", cluster.StateDirectory);
            }
            var logOffset = File.Exists(cluster.LogFile) ? new FileInfo(cluster.LogFile).Length : 0;
            TimeSpan elapsed;
            try
            {
                // Not cancellable: a pg_ctl abandoned halfway would leave a server running with nobody to stop it.
                elapsed = await cluster.StartAsync(CancellationToken.None);
            }
            catch
            {
                stateLock.Dispose();
                throw;
            }
            // From here on the cluster is stopped on exit, whatever happens next; if the AppHost began stopping while
            // pg_ctl was starting it, it is stopped right away.
            lock (_running) _running.Add(running);
            if (Volatile.Read(ref _stopped) == 1)
            {
                server.SetFailed(new OperationCanceledException("The AppHost stopped while PostgreSQL was starting."));
                await StopAsync(running);
                return;
            }
            running.Tail = Task.Run(() => FollowLogAsync(cluster.LogFile, logOffset, log, _stopping.Token));
            foreach (var logger in new[] { log, _console })
            {
                if (cluster.StartedHere)
                {
                    logger.LogInformation("{What} on 127.0.0.1:{Port} in {Seconds:0.0} s (log: {LogFile})",
                        exists ? "Started" : "Created and started", cluster.Port, elapsed.TotalSeconds, cluster.LogFile);
                }
                else
                {
                    logger.LogWarning("The private cluster was still running on 127.0.0.1:{Port} (left by an AppHost that was killed); "
                        + "using it, and stopping it on exit", cluster.Port);
                }
            }

            foreach (var logger in new[] { log, _console })
            {
                if (cluster.TlsOutcome is { } tls)
                {
                    logger.LogInformation("TLS on: {What}; clients verify it with Root Certificate={CaFile} (never installed in "
                        + "the machine's trust store)",
                        tls switch
                        {
                            LocalPostgresTlsOutcome.Created => "created a CA and a server certificate",
                            LocalPostgresTlsOutcome.ServerCertificateRenewed => "issued a new server certificate",
                            _ => "reusing the CA and server certificate",
                        }, cluster.TlsFiles.CaCertificateFile);
                }
            }

            foreach (var database in server.Databases)
            {
                await CreateDatabaseIfMissingAsync(cluster, database.DatabaseName, log, cancellationToken);
            }
            await StartStandbysAsync(server, running, log, cancellationToken);
            running.Watch = Task.Run(() => WatchAsync(server, cluster, log, _stopping.Token));

            server.SetRunning(cluster);
            await initialize.Eventing.PublishAsync(new ConnectionStringAvailableEvent(server, initialize.Services), cancellationToken);
            foreach (var database in server.Databases)
            {
                await initialize.Eventing.PublishAsync(new ConnectionStringAvailableEvent(database, initialize.Services), cancellationToken);
            }

            var started = DateTime.UtcNow;
            await PublishAsync(server, s => s with
            {
                State = KnownResourceStates.Running,
                StartTimeStamp = started,
                Properties = With(s.Properties,
                    (CustomResourceKnownProperties.Source, cluster.BinDirectory),
                    ("postgres.stateDirectory", cluster.StateDirectory),
                    ("postgres.address", $"127.0.0.1:{cluster.Port}"),
                    ("postgres.logFile", cluster.LogFile),
                    ("postgres.tlsRootCertificate", cluster.Tls ? cluster.TlsFiles.CaCertificateFile : "off"),
                    ("postgres.pid", LocalPostgresLayout.ReadPostmasterId(cluster)?.ToString() ?? ""),
                    ("postgres.standbys", running.Standbys.Count == 0 ? "none"
                        : string.Join(", ", running.Standbys.Select(standby => $"127.0.0.1:{standby.Port}")))),
            });
            foreach (var database in server.Databases)
            {
                await notifications.PublishUpdateAsync(database, s => s with
                {
                    State = KnownResourceStates.Running,
                    StartTimeStamp = started,
                    Properties = With(s.Properties,
                        ("postgres.databaseName", database.DatabaseName),
                        ("postgres.psql", LocalPostgresLayout.PsqlCommand(cluster, database.DatabaseName))),
                });
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // initdb or pg_ctl failing, a locked state directory, a database that cannot be created: one line in the
            // resource's log, the resource failed (a cluster that did start is still stopped on exit).
            log.LogError("PostgreSQL could not start: {Reason}", e.Message);
            _console.LogError("PostgreSQL could not start: {Reason}", e.Message);
            server.SetFailed(e);
            await PublishAsync(server, s => s with { State = KnownResourceStates.FailedToStart });
        }
        catch (OperationCanceledException e)
        {
            server.SetFailed(e); // the AppHost is stopping: nothing waits for the connection string any more
        }
    }

    /// <summary>
    /// AppHost:Postgres:Replicas standbys, each re-created from the running cluster at every start (pg_basebackup of a
    /// development database takes seconds, and a fresh copy cannot have fallen behind past the primary's WAL), in
    /// <c>&lt;state directory&gt;-standby-N</c>, on a free port.
    /// </summary>
    private async Task StartStandbysAsync(LocalPostgresServerResource server, RunningCluster running, ILogger log,
        CancellationToken cancellationToken)
    {
        for (var number = 1; number <= server.Replicas; number++)
        {
            var stopwatch = Stopwatch.StartNew();
            // Beside the state directory, not in it: the postgres user must reach a data directory through parents
            // that others can search, and the cluster's own directory is private to it.
            var directory = $"{Path.TrimEndingDirectorySeparator(running.Cluster.StateDirectory)}-standby-{number}";
            // A standby left by an earlier run (running, if that AppHost was killed) is stopped and replaced.
            await new LocalPostgresCluster(server.Options with { StateDirectory = directory }).DestroyAsync(CancellationToken.None);
            var standby = await running.Cluster.CreateStandbyAsync(directory, cancellationToken: cancellationToken);
            lock (_running) running.Standbys.Add(standby);
            foreach (var logger in new[] { log, _console })
            {
                logger.LogInformation("Started standby {Number} on 127.0.0.1:{Port} in {Seconds:0.0} s (streaming from 127.0.0.1:{PrimaryPort})",
                    number, standby.Port, stopwatch.Elapsed.TotalSeconds, running.Cluster.Port);
            }
        }
        server.Standbys = [.. running.Standbys];
    }

    private Task PublishAsync(LocalPostgresServerResource server, Func<CustomResourceSnapshot, CustomResourceSnapshot> update) =>
        Task.WhenAll(new[] { notifications.PublishUpdateAsync(server, update) }
            .Concat(server.Databases.Select(d => notifications.PublishUpdateAsync(d, s => s with
            {
                State = update(s).State,
                StopTimeStamp = update(s).StopTimeStamp,
            }))));

    private static async Task CreateDatabaseIfMissingAsync(
        LocalPostgresCluster cluster, string database, ILogger log, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(cluster.ConnectionString()) { Pooling = false }.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", connection);
        exists.Parameters.AddWithValue("name", database);
        if (await exists.ExecuteScalarAsync(cancellationToken) is not null) return;
        // An identifier cannot be a parameter; it is quoted (and comes from the AppHost's code, not from input).
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database.Replace("\"", "\"\"")}\"", connection);
        await create.ExecuteNonQueryAsync(cancellationToken);
        log.LogInformation("Created database {Database}", database);
    }

    /// <summary>The server is not our child process, so nothing else would say it went away.</summary>
    private async Task WatchAsync(LocalPostgresServerResource server, LocalPostgresCluster cluster, ILogger log, CancellationToken stopping)
    {
        try
        {
            var postmaster = LocalPostgresLayout.ReadPostmasterId(cluster);
            while (postmaster is { } pid && LocalPostgresLayout.IsAlive(pid))
            {
                await Task.Delay(TimeSpan.FromSeconds(1), stopping);
            }
            if (stopping.IsCancellationRequested) return;
            log.LogError("PostgreSQL stopped unexpectedly (see {LogFile})", cluster.LogFile);
            _console.LogError("PostgreSQL stopped unexpectedly (see {LogFile})", cluster.LogFile);
            await PublishAsync(server, s => s with
            {
                State = new ResourceStateSnapshot(KnownResourceStates.Exited, KnownResourceStateStyles.Error),
                StopTimeStamp = DateTime.UtcNow,
            });
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // The AppHost is stopping the cluster itself.
        }
    }

    /// <summary>postgres.log, from where this run started, line by line into the resource's console log.</summary>
    private static async Task FollowLogAsync(string path, long offset, ILogger log, CancellationToken stopping)
    {
        try
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            file.Seek(Math.Min(offset, file.Length), SeekOrigin.Begin);
            using var reader = new StreamReader(file);
            while (true)
            {
                var line = await reader.ReadLineAsync(stopping);
                if (line is null)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(250), stopping);
                    continue;
                }
                // PostgreSQL's own severities decide how the dashboard shows a line.
                if (line.Contains("ERROR:", StringComparison.Ordinal) || line.Contains("FATAL:", StringComparison.Ordinal)
                    || line.Contains("PANIC:", StringComparison.Ordinal))
                {
                    log.LogError("{Line}", line);
                }
                else if (line.Contains("WARNING:", StringComparison.Ordinal))
                {
                    log.LogWarning("{Line}", line);
                }
                else
                {
                    log.LogInformation("{Line}", line);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopped.
        }
        catch (IOException e)
        {
            log.LogWarning("Stopped following {LogFile}: {Reason}", path, e.Message);
        }
    }

    private static ImmutableArray<ResourcePropertySnapshot> With(
        ImmutableArray<ResourcePropertySnapshot> properties, params (string Name, object Value)[] values)
    {
        var builder = properties.Where(p => values.All(v => v.Name != p.Name)).ToImmutableArray().ToBuilder();
        foreach (var (name, value) in values) builder.Add(new ResourcePropertySnapshot(name, value));
        return builder.ToImmutable();
    }

    /// <summary>Stops every cluster this AppHost runs (fast shutdown: open sessions are ended). Runs once.</summary>
    public async Task StopAllAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1) return;
        await _stopping.CancelAsync();
        List<RunningCluster> running;
        lock (_running) running = [.. _running];
        foreach (var cluster in running) await StopAsync(cluster);
    }

    private async Task StopAsync(RunningCluster running)
    {
        var log = loggers.GetLogger(running.Resource);
        try
        {
            await PublishAsync(running.Resource, s => s with { State = KnownResourceStates.Stopping });
            var stopwatch = Stopwatch.StartNew();
            List<LocalPostgresCluster> standbys;
            lock (_running) standbys = [.. running.Standbys];
            foreach (var standby in standbys) await standby.StopAsync(CancellationToken.None);
            await running.Cluster.StopAsync(CancellationToken.None);
            log.LogInformation("Stopped in {Seconds:0.0} s", stopwatch.Elapsed.TotalSeconds);
            _console.LogInformation("Stopped the private cluster in {StateDirectory} in {Seconds:0.0} s",
                running.Cluster.StateDirectory, stopwatch.Elapsed.TotalSeconds);
            await PublishAsync(running.Resource, s => s with
            {
                State = KnownResourceStates.Finished,
                StopTimeStamp = DateTime.UtcNow,
            });
        }
        catch (Exception e)
        {
            log.LogError("Could not stop PostgreSQL: {Reason}", e.Message);
            _console.LogError("Could not stop PostgreSQL: {Reason}", e.Message);
        }
        finally
        {
            await Task.WhenAll(running.Tail, running.Watch).ContinueWith(_ => { }, TaskScheduler.Default);
            running.Lock.Dispose();
        }
    }

    // Stopped last, after Aspire has stopped the services that use the database.
    public Task StoppedAsync(CancellationToken cancellationToken) => StopAllAsync();

    public async ValueTask DisposeAsync()
    {
        // A host disposed without being stopped (a test that only disposes the application) still stops the cluster.
        await StopAllAsync();
        _stopping.Dispose();
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>Readiness of the local cluster (or one of its databases): a real round trip within 3 s.</summary>
public sealed class LocalPostgresHealthCheck(LocalPostgresServerResource server, string database)
    : Microsoft.Extensions.Diagnostics.HealthChecks.IHealthCheck
{
    public async Task<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult> CheckHealthAsync(
        Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!server.Running.IsCompletedSuccessfully)
        {
            return Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Unhealthy("not started");
        }
        var cluster = server.Running.Result;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(cluster.ConnectionString(database))
            {
                Pooling = false,
                Timeout = 3,
            }.ConnectionString);
            await connection.OpenAsync(deadline.Token);
            await using var command = new NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync(deadline.Token);
            return Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy();
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            return Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Unhealthy(
                e is PostgresException pg ? $"{pg.SqlState} {pg.MessageText}" : "PostgreSQL did not answer");
        }
    }
}

public static class LocalPostgresBuilderExtensions
{
    /// <summary>A PostgreSQL server from the machine's binaries; see <see cref="LocalPostgresServerResource"/>.</summary>
    public static IResourceBuilder<LocalPostgresServerResource> AddLocalPostgres(
        this IDistributedApplicationBuilder builder, string name, LocalPostgresOptions options, int replicas = 0)
    {
        builder.Services.TryAddSingleton<LocalPostgresRunner>();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, LocalPostgresRunner>(
            sp => sp.GetRequiredService<LocalPostgresRunner>()));

        var server = new LocalPostgresServerResource(name, options, replicas);
        var healthCheck = $"{name}_check";
        builder.Services.AddHealthChecks().Add(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckRegistration(
            healthCheck, _ => new LocalPostgresHealthCheck(server, "postgres"), failureStatus: null, tags: null));

        return builder.AddResource(server)
            .WithInitialState(LocalPostgresRunner.InitialState())
            .WithIconName("DatabaseMultiple")
            .WithHealthCheck(healthCheck)
            .ExcludeFromManifest()
            .OnInitializeResource((resource, initialize, cancellationToken) =>
                initialize.Services.GetRequiredService<LocalPostgresRunner>().RunAsync(resource, initialize, cancellationToken));
    }

    public static IResourceBuilder<LocalPostgresDatabaseResource> AddDatabase(
        this IResourceBuilder<LocalPostgresServerResource> server, string name, string databaseName)
    {
        var database = new LocalPostgresDatabaseResource(name, databaseName, server.Resource);
        server.Resource.Databases.Add(database);
        var healthCheck = $"{name}_check";
        server.ApplicationBuilder.Services.AddHealthChecks().Add(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckRegistration(
            healthCheck, _ => new LocalPostgresHealthCheck(server.Resource, databaseName), failureStatus: null, tags: null));
        return server.ApplicationBuilder.AddResource(database)
            .WithInitialState(LocalPostgresRunner.InitialState("PostgresDatabase"))
            .WithIconName("Database")
            .WithHealthCheck(healthCheck)
            .ExcludeFromManifest();
    }
}
