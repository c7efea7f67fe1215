using System.Security.Cryptography;
using System.Text;

namespace TcStudio.Data.WorkspaceDatabases.Postgres;

/// <summary>
/// Each PostgreSQL workspace database gets two roles of its own, neither SUPERUSER, CREATEDB, CREATEROLE,
/// REPLICATION nor BYPASSRLS, and neither a member of pg_read_server_files / pg_write_server_files /
/// pg_execute_server_program: so published code cannot read or write server files, run programs (COPY ... PROGRAM),
/// load untrusted languages or extensions such as dblink, nor connect to any other database (CONNECT is revoked from
/// PUBLIC on every workspace database).
/// <list type="bullet">
/// <item><b>owner</b> owns the database and everything in it: migrations, deploys and validation run as it;</item>
/// <item><b>exec</b> may only use the schemas, run routines and read/write tables: the execute path runs as it.</item>
/// </list>
/// Their passwords are derived (HMAC-SHA256) from Workspaces:RoleSecret, or else from the server's deploy connection
/// string, and never stored anywhere; PrepareDatabaseAsync (environment creation and every migrate) sets them.
/// </summary>
internal static class PostgresWorkspaceRoles
{
    public static string Owner(string database) => Prefix(database) + "_owner";
    public static string Execute(string database) => Prefix(database) + "_exec";

    public static string Password(string role, WorkspaceServer server, string? secret)
    {
        var key = Encoding.UTF8.GetBytes(string.IsNullOrEmpty(secret) ? "tcstudio:" + server.ConnectionString : secret);
        return Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"tcstudio-workspace-role:{server.Name}:{role}")));
    }

    /// <summary>Readable, unique per database name (role names are server-wide and at most 63 bytes).</summary>
    private static string Prefix(string database)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(database)))[..6];
        var readable = database.ToLowerInvariant();
        if (readable.Length > 40) readable = readable[..40];
        return $"tcws_{readable}_{hash}";
    }
}
