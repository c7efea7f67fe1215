using TcStudio.LocalPostgres;

namespace TcStudio.AppHost.Postgres;

/// <summary>
/// PostgreSQL run from the machine's own binaries (no container runtime needed): a private cluster in a state
/// directory, created on the first run and reused after, started and stopped by the AppHost (see
/// <see cref="LocalPostgresRunner"/>). It gives the services the connection string Aspire's PostgreSQL container
/// gives them, with the values known once the cluster runs (its port is free-picked, its password is the cluster's).
/// </summary>
public sealed class LocalPostgresServerResource(string name, LocalPostgresOptions options, int replicas = 0)
    : Resource(name), IResourceWithConnectionString
{
    private readonly TaskCompletionSource<LocalPostgresCluster> _running = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public LocalPostgresOptions Options { get; } = options;

    /// <summary>How many streaming standbys to run beside the cluster (each re-created from it at every start).</summary>
    public int Replicas { get; } = replicas;

    /// <summary>The running standbys, set before <see cref="Running"/> completes.</summary>
    public IReadOnlyList<LocalPostgresCluster> Standbys { get; internal set; } = [];

    public List<LocalPostgresDatabaseResource> Databases { get; } = [];

    /// <summary>Completes when the cluster answers (or fails with the reason it could not start).</summary>
    public Task<LocalPostgresCluster> Running => _running.Task;

    internal void SetRunning(LocalPostgresCluster cluster) => _running.TrySetResult(cluster);

    internal void SetFailed(Exception reason) => _running.TrySetException(reason);

    /// <summary>
    /// With the cluster's own CA as <c>Root Certificate</c> and <c>SSL Mode=VerifyFull</c>: the services verify the
    /// server's certificate and name without that CA ever being installed into the machine's trust store.
    /// </summary>
    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"Host=127.0.0.1;Port={PortValue};Username={LocalPostgresCluster.Superuser};Password={PasswordValue}{TlsValue}");

    /// <summary>The same server, signed in as <paramref name="user"/> (a role the worker creates) instead of the superuser.</summary>
    public ReferenceExpression ConnectionStringAs(string user, ParameterResource password) => ReferenceExpression.Create(
        $"Host=127.0.0.1;Port={PortValue};Username={user};Password={password}{TlsValue}");

    /// <summary>
    /// The cluster and each standby in one multi-host string (<c>Host=127.0.0.1:primary,127.0.0.1:standby</c>, the
    /// primary first): the API serves its lag-tolerant reads from a standby and everything else from the primary.
    /// </summary>
    public ReferenceExpression ConnectionStringWithStandbysAs(string user, ParameterResource password) => ReferenceExpression.Create(
        $"Host={new ClusterValue(this, "hosts", HostList)};Username={user};Password={password}{TlsValue}");

    private ClusterValue PortValue => new(this, "port", c => c.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private ClusterValue PasswordValue => new(this, "password", c => c.Password);

    private ClusterValue TlsValue => new(this, "tls", c => c.TlsConnectionSettings);

    private string HostList(LocalPostgresCluster primary) => string.Join(",",
        new[] { primary }.Concat(Standbys).Select(c => $"127.0.0.1:{c.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)}"));

    /// <summary>A part of the connection string that exists once the cluster has started.</summary>
    private sealed class ClusterValue(LocalPostgresServerResource server, string part, Func<LocalPostgresCluster, string> read)
        : IValueProvider, IManifestExpressionProvider
    {
        public string ValueExpression => $"{{{server.Name}.{part}}}";

        public async ValueTask<string?> GetValueAsync(CancellationToken cancellationToken = default) =>
            read(await server.Running.WaitAsync(cancellationToken));
    }
}

/// <summary>A database on the local cluster, created when the cluster starts if it does not exist.</summary>
public sealed class LocalPostgresDatabaseResource(string name, string databaseName, LocalPostgresServerResource parent)
    : Resource(name), IResourceWithParent<LocalPostgresServerResource>, IResourceWithConnectionString
{
    public string DatabaseName { get; } = databaseName;

    public LocalPostgresServerResource Parent { get; } = parent;

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create($"{Parent};Database={DatabaseName}");
}
