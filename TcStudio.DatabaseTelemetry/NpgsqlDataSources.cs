using System.Collections.Concurrent;
using Npgsql;

namespace TcStudio.DatabaseTelemetry;

/// <summary>
/// The names of the services' Npgsql data sources, and the one place that creates their one-off connections.
/// Npgsql tags every metric with the data source's name (<c>db.client.connection.pool.name</c>) and names a data
/// source it creates for a bare connection string (<c>new NpgsqlConnection(...)</c>) after that connection string,
/// host, database and user included; so every connection the services open comes from a data source named here by
/// a short, bounded label. The connection log (<see cref="NpgsqlActivityMonitor"/>) learns from <see cref="Describe"/>
/// where each named source connects and as whom, which the name no longer says.
/// </summary>
public static class NpgsqlDataSources
{
    /// <summary>The system database's pool (the Aspire resource name).</summary>
    public const string System = "tcstudio";

    /// <summary>The start-up wait's probes of the system database (and of the server's maintenance database).</summary>
    public const string Startup = "tcstudio-startup";

    /// <summary>The migration lock's session and its check that the database exists (creating it if need be).</summary>
    public const string MigrationLock = "tcstudio-migration-lock";

    /// <summary>Server-level work on workspace database servers (create and drop databases and roles).</summary>
    public const string WorkspaceAdmin = "tcstudio-workspaces-admin";

    /// <summary>host:port/database as user, for logs. Never the password.</summary>
    public static string DescribeSettings(NpgsqlConnectionStringBuilder builder) =>
        $"{builder.Host}:{builder.Port}/{builder.Database} as {builder.Username}";

    private static readonly ConcurrentDictionary<(string Name, string ConnectionString), NpgsqlDataSource> Unpooled = new();
    private static readonly ConcurrentDictionary<(string Name, string Database), string> Descriptions = new();

    /// <summary>
    /// A new, closed connection without pooling (a session of its own, ended when it closes) from the data source
    /// <paramref name="name"/> for these settings. Like Npgsql's own cache for bare connection strings, one data source
    /// is kept per distinct connection string for the life of the process.
    /// </summary>
    public static NpgsqlConnection CreateUnpooledConnection(string name, NpgsqlConnectionStringBuilder settings)
    {
        var unpooled = new NpgsqlConnectionStringBuilder(settings.ConnectionString) { Pooling = false };
        var dataSource = Unpooled.GetOrAdd((name, unpooled.ConnectionString), static key =>
        {
            var builder = new NpgsqlDataSourceBuilder(key.ConnectionString) { Name = key.Name };
            return builder.Build();
        });
        Describe(name, unpooled);
        return dataSource.CreateConnection();
    }

    /// <summary>Tells the connection log where the data source <paramref name="name"/> connects to this database, and as whom.</summary>
    public static void Describe(string name, NpgsqlConnectionStringBuilder settings) =>
        Descriptions[(name, settings.Database ?? "")] = DescribeSettings(settings);

    /// <summary>host:port/database as user, for a connection of <paramref name="name"/> to <paramref name="database"/>.</summary>
    public static bool TryDescribe(string name, string database, out string description) =>
        Descriptions.TryGetValue((name, database), out description!);
}
