using Microsoft.Data.SqlClient;
using Npgsql;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Which physical server a registered workspace server is, so two configured names for one server claim its
/// databases once (the claim's unique key is (identity, lower(database name))). Computed from the deploy connection
/// string when the server is registered, or set by the operator (<c>WorkspaceServers:&lt;name&gt;:Identity</c>) where
/// host names alone cannot tell (DNS aliases, a proxy in front of the server).
/// <list type="bullet">
/// <item>PostgreSQL: <c>postgres://host:port</c>; host lower-cased, trailing dot dropped, port 5432 when unset.
/// <c>localhost</c>, any <c>127.x.x.x</c>, <c>::1</c> and Unix-socket directories are all <c>localhost</c> (one
/// machine's server on that port). A multi-host string (<c>Host=a,b:5433</c>) is every host:port, distinct and sorted,
/// joined with commas: the same set of servers in any order is one identity.</item>
/// <item>SQL Server: <c>sqlserver://host:port</c> (1433 when unset) or <c>sqlserver://host\instance</c> for a named
/// instance without a port; the protocol prefix (<c>tcp:</c>, <c>np:</c>...) is dropped; <c>.</c>, <c>(local)</c>,
/// <c>localhost</c>, <c>127.0.0.1</c> and <c>::1</c> are <c>localhost</c>.</item>
/// </list>
/// </summary>
public static class WorkspaceServerIdentity
{
    public const int PostgresDefaultPort = 5432;
    public const int SqlServerDefaultPort = 1433;

    public static string Of(string provider, string connectionString)
    {
        try
        {
            return provider == WorkspaceProviders.SqlServer ? OfSqlServer(connectionString) : OfPostgres(connectionString);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException or KeyNotFoundException)
        {
            return $"{provider}://invalid"; // a malformed string is reported by the registry; it never connects
        }
    }

    private static string OfPostgres(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var defaultPort = builder.Port > 0 ? builder.Port : PostgresDefaultPort;
        var hosts = (builder.Host ?? "localhost").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var normalised = hosts.Select(host =>
        {
            var (name, port) = SplitHostPort(host, defaultPort);
            return $"{Normalise(name)}:{port}";
        }).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);
        return "postgres://" + string.Join(',', normalised.DefaultIfEmpty($"localhost:{defaultPort}"));
    }

    private static (string Host, int Port) SplitHostPort(string host, int defaultPort)
    {
        if (host.StartsWith('[')) // [::1] or [::1]:5433
        {
            var close = host.IndexOf(']');
            var name = close > 0 ? host[1..close] : host.Trim('[', ']');
            var rest = close > 0 ? host[(close + 1)..] : "";
            return (name, rest.StartsWith(':') && int.TryParse(rest[1..], out var p) ? p : defaultPort);
        }
        var colon = host.LastIndexOf(':');
        if (colon > 0 && host.IndexOf(':') == colon && int.TryParse(host[(colon + 1)..], out var port)) return (host[..colon], port);
        return (host, defaultPort); // a bare IPv6 address, or no port
    }

    private static string OfSqlServer(string connectionString)
    {
        var dataSource = new SqlConnectionStringBuilder(connectionString).DataSource?.Trim() ?? "";
        var protocol = dataSource.IndexOf(':');
        if (protocol > 0 && dataSource[..protocol] is var prefix && prefix.Length <= 5 && prefix.All(char.IsLetter)
            && !dataSource[(protocol + 1)..].StartsWith(':'))
        {
            dataSource = dataSource[(protocol + 1)..]; // tcp:, np:, lpc:, admin:
        }
        int? port = null;
        var comma = dataSource.LastIndexOf(',');
        if (comma > 0 && int.TryParse(dataSource[(comma + 1)..].Trim(), out var p))
        {
            port = p;
            dataSource = dataSource[..comma];
        }
        string? instance = null;
        var backslash = dataSource.IndexOf('\\');
        if (backslash > 0)
        {
            instance = dataSource[(backslash + 1)..].Trim().ToLowerInvariant();
            dataSource = dataSource[..backslash];
        }
        var host = Normalise(dataSource.Trim());
        return instance is { Length: > 0 } && port is null
            ? $"sqlserver://{host}\\{instance}"
            : $"sqlserver://{host}:{port ?? SqlServerDefaultPort}";
    }

    private static string Normalise(string host)
    {
        var name = host.Trim().TrimEnd('.').ToLowerInvariant();
        if (name.Length == 0 || name is "localhost" or "(local)" or "::1" or "0:0:0:0:0:0:0:1" || host.Trim() == "." ) return "localhost";
        if (name.StartsWith('/') || name.StartsWith('@')) return "localhost"; // a Unix-socket directory (or abstract socket) is this machine
        if (System.Net.IPAddress.TryParse(name, out var address) && System.Net.IPAddress.IsLoopback(address)) return "localhost";
        return name;
    }
}
