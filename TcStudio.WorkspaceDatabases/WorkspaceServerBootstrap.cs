using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.SystemDatabase.Entities;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// The worker's <c>workspaces bootstrap</c>: the only code that uses a workspace server's admin credential
/// (<c>ConnectionStrings:postgres</c> for server <c>local</c>, <c>WorkspaceServers:&lt;name&gt;:AdminConnectionString</c>
/// for the others). Idempotent. On a PostgreSQL server it installs the provisioning functions
/// (<see cref="PostgresProvisioning"/>) in the database the server's deploy credential connects to, then creates
/// (<c>createProvisioner</c>) or checks the deploy credential's login: LOGIN CREATEDB, EXECUTE on the functions,
/// nothing else. SQL Server needs no bootstrap (its deploy login needs dbcreator; see README).
/// </summary>
public static class WorkspaceServerBootstrap
{
    public const string LocalAdminConnectionStringKey = "ConnectionStrings:postgres";

    /// <summary>
    /// The admin connection string configured for <paramref name="server"/>, or null; through the server's SSH tunnel
    /// when it has one (<c>WorkspaceServers:&lt;name&gt;:Ssh</c>; for <c>local</c> also <c>Database:Ssh</c>).
    /// </summary>
    public static string? AdminConnectionString(IConfiguration configuration, WorkspaceServer server)
    {
        var isLocal = server.Name.Equals(WorkspaceServerRegistry.LocalName, StringComparison.OrdinalIgnoreCase);
        var configured = isLocal
            ? configuration[LocalAdminConnectionStringKey] is { Length: > 0 } local ? local : configuration[AdminKey(server)]
            : configuration[AdminKey(server)];
        if (configured is null || server.Provider != WorkspaceProviders.Postgres) return configured;
        var ssh = configuration.GetSection($"{WorkspaceServerRegistry.SectionName}:{server.Name}:{SystemDatabase.Ssh.SshTunnelOptions.SectionName}");
        var tunnelName = server.Name;
        if (isLocal && !ssh.Exists())
        {
            // The system database's server: the same tunnel as the system database.
            ssh = configuration.GetSection($"{DatabaseOptions.SectionName}:{SystemDatabase.Ssh.SshTunnelOptions.SectionName}");
            tunnelName = SystemDatabase.Ssh.SshTunnels.SystemServerName;
        }
        return SystemDatabase.Ssh.SshTunnels.Shared.Route(new NpgsqlConnectionStringBuilder(configured), ssh, tunnelName, open: true)
            .ConnectionString;
    }

    public static string AdminKey(WorkspaceServer server) =>
        server.Name.Equals(WorkspaceServerRegistry.LocalName, StringComparison.OrdinalIgnoreCase)
            ? $"{LocalAdminConnectionStringKey} (or {WorkspaceServerRegistry.SectionName}:{server.Name}:AdminConnectionString)"
            : $"{WorkspaceServerRegistry.SectionName}:{server.Name}:AdminConnectionString";

    public sealed record Outcome(IReadOnlyList<string> Lines, IReadOnlyList<string> Warnings, TimeSpan Duration);

    /// <summary>Bootstraps one server with its admin connection string. Throws (one-line messages) when it cannot.</summary>
    public static async Task<Outcome> RunAsync(WorkspaceServer server, string adminConnectionString, bool createProvisioner, CancellationToken ct)
    {
        var stopwatch = Stopwatch.StartNew();
        if (server.Provider != WorkspaceProviders.Postgres)
        {
            return new Outcome(["SQL Server needs no bootstrap: its deploy login needs dbcreator (see README, Security)"], [], stopwatch.Elapsed);
        }

        var deploy = new NpgsqlConnectionStringBuilder(server.ConnectionString);
        var database = string.IsNullOrEmpty(deploy.Database) ? "postgres" : deploy.Database;
        var login = deploy.Username ?? throw new InvalidOperationException($"The deploy connection string of server "
            + $"'{server.Name}' names no Username.");
        var admin = new NpgsqlConnectionStringBuilder(adminConnectionString)
        {
            Database = database,
            Pooling = false,
            ApplicationName = "tcstudio-workspaces-bootstrap",
        };
        await using var connection = new NpgsqlConnection(admin.ConnectionString);
        await connection.OpenAsync(ct);
        await using (var rights = new NpgsqlCommand("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user", connection))
        {
            if (await rights.ExecuteScalarAsync(ct) is not true)
            {
                throw new InvalidOperationException($"The admin login of server '{server.Name}' is neither a superuser nor CREATEROLE: it cannot "
                    + "install the provisioning functions.");
            }
        }

        var lines = new List<string>();
        var before = await PostgresProvisioning.ReadStateAsync(connection, ct);
        await PostgresProvisioning.InstallAsync(connection, grantee: null, ct);
        lines.Add(before.InstalledVersion == PostgresProvisioning.Version
            ? $"provisioning functions up to date ({PostgresProvisioning.Schema} v{PostgresProvisioning.Version} in database {database})"
            : $"installed the provisioning functions ({PostgresProvisioning.Schema} v{PostgresProvisioning.Version} in database {database})");
        var provisioner = await PostgresProvisioning.EnsureProvisionerAsync(connection, login, deploy.Password, database, createProvisioner, ct);
        lines.AddRange(provisioner.Lines);
        return new Outcome(lines, provisioner.Warnings, stopwatch.Elapsed);
    }
}
