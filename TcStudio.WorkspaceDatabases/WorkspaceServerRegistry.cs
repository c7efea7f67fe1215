using Microsoft.Data.SqlClient;
using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// A database server the operator registered for workspace databases. API users only ever name it; its connection
/// strings (deploy credential, optional least-privilege execute credential) never leave this process.
/// </summary>
public sealed record WorkspaceServer(string Name, string Provider, string ConnectionString, string? ExecuteConnectionString)
{
    /// <summary>Which physical server this is (<see cref="WorkspaceServerIdentity"/>): the claim on its databases is keyed by it.</summary>
    public string Identity { get; init; } = WorkspaceServerIdentity.Of(Provider, ConnectionString);

    /// <summary>Name and provider only: connection strings hold secrets.</summary>
    public override string ToString() => $"{Name} ({Provider})";
}

/// <summary>
/// The registered workspace servers, read from configuration once:
/// <list type="bullet">
/// <item><c>ConnectionStrings:sql</c> → server <c>sql</c> (SQL Server);</item>
/// <item>the system PostgreSQL (<c>ConnectionStrings:tcstudio</c>) → server <c>local</c> (PostgreSQL), unless
/// <c>WorkspaceServers:local:ConnectionString</c> gives it a deploy credential of its own (the provisioner login);</item>
/// <item><c>WorkspaceServers:&lt;name&gt;:Provider</c> (sqlserver|postgres), <c>:ConnectionString</c> (deploy credential,
/// may create databases) and optional <c>:ExecuteConnectionString</c> (SQL Server: EXECUTE only).</item>
/// </list>
/// Any server may set <c>WorkspaceServers:&lt;name&gt;:Identity</c> (see <see cref="WorkspaceServerIdentity"/>).
/// Admin connection strings (<c>:AdminConnectionString</c>, <c>ConnectionStrings:postgres</c>) are never read here:
/// only the worker's bootstrap uses them.
/// </summary>
public sealed partial class WorkspaceServerRegistry : TcStudio.SystemDatabase.Seeding.IDefaultWorkspaceServer
{
    public const string SqlServerName = "sql";
    public const string LocalName = "local";
    public const string SectionName = TcStudio.SystemDatabase.Ssh.SshTunnels.WorkspaceServersSection;

    private readonly Dictionary<string, WorkspaceServer> _servers = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<string> _errors = [];

    private readonly IConfiguration _configuration;

    public WorkspaceServerRegistry(IConfiguration configuration)
    {
        _configuration = configuration;
        // ConnectionStrings:sql, or Aspire's SqlClient settings shape (Aspire:Microsoft:Data:SqlClient[:sql]:ConnectionString).
        if (ReadSqlConnectionString(configuration) is { Length: > 0 } sql)
        {
            Add(new WorkspaceServer(SqlServerName, WorkspaceProviders.SqlServer, sql,
                configuration[$"{SectionName}:{SqlServerName}:ExecuteConnectionString"]));
        }
        if (configuration[$"{SectionName}:{LocalName}:ConnectionString"] is { Length: > 0 } localOverride)
        {
            if (IsWellFormed(WorkspaceProviders.Postgres, localOverride))
            {
                // The system database's server: its own Ssh section if it has one, else the system database's tunnel.
                var ssh = configuration.GetSection($"{SectionName}:{LocalName}:{SystemDatabase.Ssh.SshTunnelOptions.SectionName}");
                var tunnelName = LocalName;
                if (!ssh.Exists())
                {
                    ssh = configuration.GetSection($"{DatabaseOptions.SectionName}:{SystemDatabase.Ssh.SshTunnelOptions.SectionName}");
                    tunnelName = SystemDatabase.Ssh.SshTunnels.SystemServerName;
                }
                AddTunnelled(new WorkspaceServer(LocalName, WorkspaceProviders.Postgres, localOverride, null), ssh, tunnelName);
            }
            else
            {
                _errors.Add($"{SectionName}:{LocalName}:ConnectionString is malformed.");
            }
        }
        else if (SystemDatabaseConnection.ReadConnectionString(configuration) is { Length: > 0 })
        {
            string? local = null;
            string? localIdentity = null;
            try
            {
                // The system database's SSL and timeout settings apply to its server's workspace databases too.
                // Through the system database's SSH tunnel when it has one; identified by the server's own address.
                local = SystemDatabaseConnection.Build(configuration, "tcstudio-workspaces").ConnectionString;
                localIdentity = WorkspaceServerIdentity.Of(WorkspaceProviders.Postgres,
                    SystemDatabaseConnection.BuildDirect(configuration, "tcstudio-workspaces").ConnectionString);
            }
            catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException or SystemDatabase.Ssh.SshTunnelException)
            {
                // Reported by SystemDatabaseConnection.FindConfigurationError at start.
            }
            if (local is not null) Add(new WorkspaceServer(LocalName, WorkspaceProviders.Postgres, local, null) { Identity = localIdentity! });
        }
        foreach (var section in configuration.GetSection(SectionName).GetChildren())
        {
            var name = section.Key;
            if (string.Equals(name, LocalName, StringComparison.OrdinalIgnoreCase)) continue; // read above
            var provider = section["Provider"]?.Trim().ToLowerInvariant();
            var connectionString = section["ConnectionString"];
            if (provider is null && connectionString is null) continue; // e.g. only sql's ExecuteConnectionString
            if (!ServerNamePattern().IsMatch(name))
            {
                _errors.Add($"{SectionName}:{name}: the name must be 1–63 letters, digits, '_' or '-'.");
                continue;
            }
            if (provider is not (WorkspaceProviders.Postgres or WorkspaceProviders.SqlServer))
            {
                _errors.Add($"{SectionName}:{name}:Provider must be 'sqlserver' or 'postgres'.");
                continue;
            }
            if (string.IsNullOrWhiteSpace(connectionString) || !IsWellFormed(provider, connectionString))
            {
                _errors.Add($"{SectionName}:{name}:ConnectionString is missing or malformed.");
                continue;
            }
            AddTunnelled(new WorkspaceServer(name, provider, connectionString, section["ExecuteConnectionString"]),
                section.GetSection(SystemDatabase.Ssh.SshTunnelOptions.SectionName), name);
        }
    }

    /// <summary>
    /// One line per workspace server whose SSH tunnel did not open at start (the server stays registered and its
    /// tunnel keeps trying in the background, with backoff; /health shows it down meanwhile).
    /// </summary>
    public IReadOnlyList<string> TunnelErrors => _tunnelErrors;

    private readonly List<string> _tunnelErrors = [];

    /// <summary>
    /// Registers the server, its connection strings pointed at its SSH tunnel (<c>WorkspaceServers:&lt;name&gt;:Ssh</c>)
    /// when it has one. The identity (the claim key on its databases) stays the server's own address.
    /// </summary>
    private void AddTunnelled(WorkspaceServer server, IConfigurationSection ssh, string tunnelName)
    {
        if (SystemDatabase.Ssh.SshTunnelOptions.Read(ssh) is null)
        {
            Add(server);
            return;
        }
        try
        {
            string Route(string connectionString, bool open) => server.Provider == WorkspaceProviders.Postgres
                ? SystemDatabase.Ssh.SshTunnels.Shared.Route(new NpgsqlConnectionStringBuilder(connectionString), ssh, tunnelName, open)
                    .ConnectionString
                : SystemDatabase.Ssh.SshTunnels.Shared.RouteSqlServer(connectionString, ssh, tunnelName, open);
            string routed;
            try
            {
                routed = Route(server.ConnectionString, open: true);
            }
            catch (SystemDatabase.Ssh.SshTunnelException e) when (SystemDatabase.Ssh.SshTunnelOptions.Read(ssh)?.FindError() is null)
            {
                _tunnelErrors.Add(e.Message);
                routed = Route(server.ConnectionString, open: false);
            }
            Add(server with
            {
                ConnectionString = routed,
                ExecuteConnectionString = server.ExecuteConnectionString is { Length: > 0 } execute ? Route(execute, open: false) : null,
            });
        }
        catch (SystemDatabase.Ssh.SshTunnelException e)
        {
            _errors.Add(e.Message);
        }
    }

    public IReadOnlyCollection<WorkspaceServer> Servers => _servers.Values.OrderBy(s => s.Name, StringComparer.Ordinal).ToList();

    /// <summary>One line per configuration mistake (names keys, never values).</summary>
    public IReadOnlyList<string> ConfigurationErrors => _errors;

    public WorkspaceServer? Find(string name) => _servers.GetValueOrDefault(name);

    /// <summary>Where seeded environments go: SQL Server when configured, otherwise the local PostgreSQL.</summary>
    public WorkspaceServer? DefaultServer => Find(SqlServerName) ?? Find(LocalName);

    /// <summary>
    /// <c>ConnectionStrings:sql</c>, else Aspire's SqlClient settings' <c>ConnectionString</c> (keyed
    /// <c>Aspire:Microsoft:Data:SqlClient:sql</c>, then general), the shape ServiceDefaults' AspireSqlClientSettings reads.
    /// </summary>
    private static string? ReadSqlConnectionString(IConfiguration configuration) =>
        configuration.GetConnectionString(SqlServerName) is { Length: > 0 } connectionString ? connectionString
        : configuration[$"{AspireSqlClientSection}:{SqlServerName}:ConnectionString"] is { Length: > 0 } keyed ? keyed
        : configuration[$"{AspireSqlClientSection}:ConnectionString"] is { Length: > 0 } general ? general
        : null;

    private const string AspireSqlClientSection = "Aspire:Microsoft:Data:SqlClient";

    (string Name, string Provider)? TcStudio.SystemDatabase.Seeding.IDefaultWorkspaceServer.DefaultServer =>
        DefaultServer is { } server ? (server.Name, server.Provider) : null;

    private void Add(WorkspaceServer server)
    {
        var identity = _configuration[$"{SectionName}:{server.Name}:Identity"];
        _servers[server.Name] = string.IsNullOrWhiteSpace(identity) ? server : server with { Identity = identity.Trim().ToLowerInvariant() };
    }

    private static bool IsWellFormed(string provider, string connectionString)
    {
        try
        {
            _ = provider == WorkspaceProviders.Postgres
                ? new NpgsqlConnectionStringBuilder(connectionString).ConnectionString
                : new SqlConnectionStringBuilder(connectionString).ConnectionString;
            return true;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException or KeyNotFoundException)
        {
            return false;
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
    private static partial System.Text.RegularExpressions.Regex ServerNamePattern();
}
