using Microsoft.Extensions.Configuration;
using TcStudio.LocalPostgres;

namespace TcStudio.AppHost.Postgres;

/// <summary>How PostgreSQL is provided (AppHost:Postgres:Mode).</summary>
public enum PostgresMode
{
    /// <summary>Aspire's PostgreSQL container (AddPostgres) with a data volume and pg_stat_statements preloaded.</summary>
    Container,

    /// <summary>A private cluster from the machine's PostgreSQL binaries (<see cref="LocalPostgresServerResource"/>).</summary>
    Local,

    /// <summary>An existing server: ConnectionStrings:postgres (superuser or owner of the system database).</summary>
    Existing,
}

/// <summary>The AppHost:Postgres section, read and checked once.</summary>
public sealed record PostgresSettings
{
    public const string ModeKey = "AppHost:Postgres:Mode";
    public const string StateDirectoryKey = "AppHost:Postgres:StateDirectory";
    public const string PortKey = "AppHost:Postgres:Port";
    public const string ReplicasKey = "AppHost:Postgres:Replicas";
    public const int MaxReplicas = 3;
    public const string ServerConnectionName = "postgres";

    public required PostgresMode Mode { get; init; }

    /// <summary>What was asked for and why this mode was taken, for the start-up banner.</summary>
    public required string Reason { get; init; }

    public required LocalPostgresOptions Local { get; init; }

    /// <summary>
    /// Streaming standbys of the local cluster (0, the default: none). The API's connection string then lists the
    /// primary and each standby, and its lag-tolerant reads go to a standby (README, "Read replicas").
    /// </summary>
    public int Replicas { get; init; }

    /// <summary>
    /// auto (the default) takes the container when a container runtime answers within 2 s, the local binaries
    /// otherwise. In publish mode there is no local server to deploy: auto and local publish the container.
    /// </summary>
    public static PostgresSettings Read(IConfiguration configuration, bool publishMode, string repositoryRoot,
        Func<bool> containerRuntimeAnswers)
    {
        var requested = AppHostSettings.ReadChoice(configuration, ModeKey, "auto", "container", "local", "existing");
        var (mode, reason) = requested switch
        {
            "existing" => (PostgresMode.Existing, $"{ModeKey}=existing: the server in ConnectionStrings:{ServerConnectionName}"),
            "container" => (PostgresMode.Container, $"{ModeKey}=container"),
            _ when publishMode => (PostgresMode.Container, "publishing: PostgreSQL is deployed as a container"),
            "local" => (PostgresMode.Local, $"{ModeKey}=local"),
            _ when containerRuntimeAnswers() => (PostgresMode.Container, $"{ModeKey}=auto and {ContainerRuntimeProbe.RuntimeName} answers"),
            _ => (PostgresMode.Local, $"{ModeKey}=auto and no container runtime answers within "
                + $"{ContainerRuntimeProbe.DefaultTimeout.TotalSeconds:0} s"),
        };

        if (mode == PostgresMode.Existing && !publishMode) CheckExistingServer(configuration);
        var replicas = ReadReplicas(configuration, mode);

        var stateDirectory = configuration[StateDirectoryKey] is { Length: > 0 } configured
            ? Path.GetFullPath(configured)
            : LocalPostgresLayout.DefaultStateDirectory(repositoryRoot, LocalPostgresCluster.RunningAsRoot);
        return new PostgresSettings
        {
            Mode = mode,
            Reason = reason,
            Local = new LocalPostgresOptions
            {
                StateDirectory = stateDirectory,
                Port = AppHostSettings.ReadPort(configuration, PortKey),
            },
            Replicas = replicas,
        };
    }

    private static int ReadReplicas(IConfiguration configuration, PostgresMode mode)
    {
        var value = configuration[ReplicasKey];
        if (string.IsNullOrWhiteSpace(value)) return 0;
        if (!int.TryParse(value, out var replicas) || replicas is < 0 or > MaxReplicas)
        {
            throw new AppHostConfigurationException($"'{ReplicasKey}' must be a whole number from 0 to {MaxReplicas}.");
        }
        return (replicas, mode) switch
        {
            (0, _) or (_, PostgresMode.Local) => replicas,
            // An existing server's standbys are the operator's: the connection string names them (Host=primary,standby).
            (_, PostgresMode.Existing) => throw new AppHostConfigurationException(
                $"'{ReplicasKey}' starts standbys of the local cluster only; with an existing server, list its standbys in "
                + $"ConnectionStrings:{ServerConnectionName} (Host=primary,standby1,...)."),
            _ => throw new AppHostConfigurationException(
                $"'{ReplicasKey}' starts standbys of the local cluster only; set {ModeKey}=local to use it."),
        };
    }

    private static void CheckExistingServer(IConfiguration configuration)
    {
        const string example = "e.g. dotnet user-secrets set ConnectionStrings:postgres \"Host=...;Username=postgres;Password=...\" "
            + "--project TcStudio.AppHost";
        if (!AppHostSettings.TryReadConnectionString(configuration, ServerConnectionName, out var connectionString))
        {
            throw new AppHostConfigurationException(
                $"{ModeKey} is 'existing' but ConnectionStrings:{ServerConnectionName} is not set ({example}).");
        }
        string? host;
        try
        {
            host = new Npgsql.NpgsqlConnectionStringBuilder(connectionString).Host;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            // The value may hold a password: name the key, never what it holds.
            throw new AppHostConfigurationException($"ConnectionStrings:{ServerConnectionName} is malformed ({example}).");
        }
        if (string.IsNullOrWhiteSpace(host))
        {
            throw new AppHostConfigurationException($"ConnectionStrings:{ServerConnectionName} has no Host ({example}).");
        }
    }
}
