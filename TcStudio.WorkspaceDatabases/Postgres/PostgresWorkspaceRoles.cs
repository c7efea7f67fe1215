using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace TcStudio.WorkspaceDatabases.Postgres;

/// <summary>
/// Each PostgreSQL environment gets two roles of its own, named after the environment's id (never its database's
/// name), so a later environment never inherits an earlier one's roles or data:
/// <list type="bullet">
/// <item><b>tcws_&lt;32 hex of the environment id&gt;_owner</b> owns the database and everything in it: migrations,
/// deploys and validation run as it;</item>
/// <item><b>tcws_&lt;...&gt;_exec</b> may only use the schemas, run routines and read/write tables: the execute path
/// runs as it.</item>
/// </list>
/// Both are LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS with a connection limit,
/// and members of nothing: they are created only through the provisioning functions (<see cref="PostgresProvisioning"/>),
/// with random passwords kept encrypted in the system database and set as SCRAM verifiers.
/// </summary>
public static class PostgresWorkspaceRoles
{
    public const string Prefix = "tcws_";

    public static string Owner(Guid environmentId) => $"{Prefix}{environmentId:N}_owner";
    public static string Execute(Guid environmentId) => $"{Prefix}{environmentId:N}_exec";

    /// <summary>The execute role of the environment whose owner role this connection logged in as (deploys grant to it).</summary>
    public static string Execute(NpgsqlConnection ownerConnection)
    {
        var owner = ownerConnection.UserName ?? throw new InvalidOperationException("The connection has no user name.");
        if (!owner.EndsWith("_owner", StringComparison.Ordinal) || !owner.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw new InvalidOperationException("Deploys run as an environment's owner role.");
        }
        return owner[..^"_owner".Length] + "_exec";
    }

    /// <summary>
    /// The roles an earlier version made per database name (<c>tcws_&lt;database&gt;_&lt;hash&gt;_owner|exec</c>, passwords
    /// derived, never stored): read only to convert such environments (<c>workspaces migrate</c>).
    /// </summary>
    public static (string Owner, string Execute) Legacy(string database)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(database)))[..6];
        var readable = database.ToLowerInvariant();
        if (readable.Length > 40) readable = readable[..40];
        return ($"{Prefix}{readable}_{hash}_owner", $"{Prefix}{readable}_{hash}_exec");
    }
}
