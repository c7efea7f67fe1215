using System.Diagnostics;
using Npgsql;
using TcStudio.AppHost.LocalPostgres;

namespace TcStudio.AppHost;

/// <summary>
/// The PostgreSQL server the system runs on: the existing server in <c>ConnectionStrings:postgres</c>, or the private
/// local cluster (created on the first run, reused afterwards). The AppHost stops the local cluster on exit, and
/// never touches an existing server.
/// </summary>
public sealed class PostgresResource
{
    private const string LockFileName = "apphost.lock";

    private readonly LocalPostgresCluster? _cluster;
    private readonly FileStream? _stateDirectoryLock;

    private PostgresResource(NpgsqlConnectionStringBuilder server, string summary,
        LocalPostgresCluster? cluster = null, FileStream? stateDirectoryLock = null)
    {
        Server = server;
        Summary = summary;
        _cluster = cluster;
        _stateDirectoryLock = stateDirectoryLock;
    }

    /// <summary>Superuser (or owner) credentials for the server.</summary>
    public NpgsqlConnectionStringBuilder Server { get; }

    /// <summary>Where the server is and how to reach it with psql, for the start-up banner. Never a password.</summary>
    public string Summary { get; }

    public static async Task<PostgresResource> StartAsync(AppHostOptions options)
    {
        if (options.ExistingServer is { } existing)
        {
            Console.WriteLine($"PostgreSQL: using the server in {AppHostOptions.PostgresConnectionKey} "
                + $"({existing.Host}:{existing.Port} as {existing.Username}); the migration worker waits for it.");
            return new PostgresResource(existing,
                $"{existing.Host}:{existing.Port}, database {options.DatabaseName} ({AppHostOptions.PostgresConnectionKey}; left running on exit)");
        }

        var stateDirectoryLock = LockStateDirectory(options.PostgresStateDirectory);
        try
        {
            return await StartLocalClusterAsync(options, stateDirectoryLock);
        }
        catch
        {
            await stateDirectoryLock.DisposeAsync();
            throw;
        }
    }

    private static async Task<PostgresResource> StartLocalClusterAsync(AppHostOptions options, FileStream stateDirectoryLock)
    {
        var cluster = new LocalPostgresCluster(new LocalPostgresOptions
        {
            StateDirectory = options.PostgresStateDirectory,
            Port = options.PostgresPort,
        });
        var exists = File.Exists(Path.Combine(cluster.DataDirectory, "PG_VERSION"));
        Console.WriteLine(exists
            ? $"PostgreSQL: starting the private cluster in {cluster.StateDirectory}"
            : $"PostgreSQL: creating a private cluster in {cluster.StateDirectory} (first run)");
        // Not cancellable: pg_ctl abandoned halfway would leave a server running with nobody to stop it. It takes a
        // second or two; a Ctrl+C meanwhile is honoured right after, and the server is stopped again.
        var elapsed = await cluster.StartAsync(CancellationToken.None);
        // Already running although this AppHost holds the state directory's lock: an earlier run was killed before
        // it could stop it. Adopt it, so this run stops it and it does not outlive everything else.
        Console.WriteLine(cluster.StartedHere
            ? $"PostgreSQL: {(exists ? "started" : "created and started")} on 127.0.0.1:{cluster.Port} in {elapsed.TotalSeconds:0.0} s "
              + $"(log: {cluster.LogFile})"
            : $"PostgreSQL: the private cluster was still running on 127.0.0.1:{cluster.Port} (left by an earlier run); "
              + "using it, and stopping it on exit.");

        var psql = LocalPostgresCluster.RunningAsRoot
            ? $"runuser -u postgres -- psql -h {cluster.DataDirectory} -p {cluster.Port} {options.DatabaseName}"
            : $"psql -h {cluster.DataDirectory} -p {cluster.Port} -U {LocalPostgresCluster.Superuser} {options.DatabaseName}";
        return new PostgresResource(new NpgsqlConnectionStringBuilder(cluster.ConnectionString()),
            $"private cluster in {cluster.StateDirectory}, 127.0.0.1:{cluster.Port}, database {options.DatabaseName}; psql: {psql}",
            cluster, stateDirectoryLock);
    }

    /// <summary>
    /// One AppHost per state directory: a second one would share the cluster and stop it under the first's feet.
    /// The lock is the kernel's (flock through FileShare.None), so it is released however the holder dies.
    /// </summary>
    private static FileStream LockStateDirectory(string stateDirectory)
    {
        Directory.CreateDirectory(stateDirectory);
        try
        {
            return new FileStream(Path.Combine(stateDirectory, LockFileName), FileMode.OpenOrCreate, FileAccess.ReadWrite,
                FileShare.None);
        }
        catch (IOException)
        {
            throw new AppHostConfigurationException(
                $"Another AppHost is running with the PostgreSQL state directory {stateDirectory}. Stop it first, or give "
                + $"this one a directory of its own ({AppHostOptions.Section}:PostgresStateDirectory).");
        }
    }

    /// <summary>
    /// Completes if the local cluster's server goes away while the system runs (it is not our child process, so
    /// nothing else would tell us). Never completes for an existing server: the services' health checks cover it.
    /// </summary>
    public async Task WatchAsync(CancellationToken cancellationToken)
    {
        if (_cluster is null || ReadPostmasterId() is not { } postmaster)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return;
        }
        while (Posix.IsAlive(postmaster))
        {
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        }
    }

    /// <summary>Stops the local cluster; an existing server is left alone.</summary>
    public async Task StopAsync()
    {
        if (_cluster is null) return;
        try
        {
            var stopwatch = Stopwatch.StartNew();
            await _cluster.StopAsync(CancellationToken.None);
            Console.WriteLine($"PostgreSQL: stopped in {stopwatch.Elapsed.TotalSeconds:0.0} s.");
        }
        finally
        {
            if (_stateDirectoryLock is not null) await _stateDirectoryLock.DisposeAsync();
        }
    }

    private int? ReadPostmasterId()
    {
        // postmaster.pid: the first line is the server's process id.
        var pidFile = Path.Combine(_cluster!.DataDirectory, "postmaster.pid");
        try
        {
            return int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
