using Microsoft.Data.SqlClient;
using Npgsql;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Which database names an environment may use: plain identifiers (so they can be quoted safely where they cannot
/// be parameters), within the server's length limit, and never a system or maintenance database nor the database the
/// server's own connection string points at (for server 'local', the system database itself).
/// </summary>
public static partial class WorkspaceDatabaseNames
{
    private static readonly HashSet<string> PostgresReserved = new(StringComparer.OrdinalIgnoreCase) { "postgres", "template0", "template1" };
    private static readonly HashSet<string> SqlServerReserved = new(StringComparer.OrdinalIgnoreCase) { "master", "model", "msdb", "tempdb" };

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*\\z")]
    public static partial System.Text.RegularExpressions.Regex Pattern();

    /// <summary>Null when usable; otherwise what is wrong, in a sentence.</summary>
    public static string? FindProblem(string database, WorkspaceServer server, IWorkspaceDatabaseProvider provider)
    {
        if (!Pattern().IsMatch(database))
        {
            return "the database name must be letters, digits and '_', starting with a letter or '_'.";
        }
        if (database.Length > provider.MaxDatabaseNameLength)
        {
            return $"the database name must be at most {provider.MaxDatabaseNameLength} characters on {provider.Name}.";
        }
        var reserved = provider.Name == WorkspaceProviders.Postgres ? PostgresReserved : SqlServerReserved;
        if (reserved.Contains(database) || string.Equals(database, ServerDatabase(server), StringComparison.OrdinalIgnoreCase))
        {
            return $"'{database}' is a system database of server '{server.Name}' and cannot hold a workspace.";
        }
        return null;
    }

    private static string? ServerDatabase(WorkspaceServer server) =>
        server.Provider == WorkspaceProviders.Postgres
            ? new NpgsqlConnectionStringBuilder(server.ConnectionString).Database
            : new SqlConnectionStringBuilder(server.ConnectionString).InitialCatalog;
}
