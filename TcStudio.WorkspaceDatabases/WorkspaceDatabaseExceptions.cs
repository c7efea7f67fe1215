using System.Net.Sockets;
using Microsoft.Data.SqlClient;
using Npgsql;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// A failure in a workspace database, in the domain's terms: what went wrong and the environment it concerns. How a
/// caller is told (an HTTP status, a problem's title) is the API's business (ApiExceptionHandler), not this layer's.
/// Deliberately not a DbException, so the system database's retrying execution strategy never mistakes a workspace
/// failure for its own transient error and re-runs a request.
/// </summary>
public abstract class WorkspaceDatabaseException(string message, string environment, Exception? inner = null)
    : Exception(message, inner)
{
    public string Environment { get; } = environment;

    /// <summary>The input the caller can change to fix it (e.g. databaseName), when there is one.</summary>
    public virtual string? Field => null;
}

/// <summary>
/// The environment points somewhere it may not, or at something not there (unknown server, bad or reserved database
/// name, another provider than its workspace's, a procedure not deployed there): no attempt made.
/// </summary>
public sealed class WorkspaceTargetException(string message, string environment, string? field = null)
    : WorkspaceDatabaseException(message, environment)
{
    public override string? Field { get; } = field;
}

/// <summary>
/// The database is not (or not only) this environment's: claimed by another environment, not made by TC Studio, or
/// marked as another environment's database. The message names both sides.
/// </summary>
public sealed class WorkspaceOwnershipException(string message, string environment, string? field = null)
    : WorkspaceDatabaseException(message, environment)
{
    public override string? Field { get; } = field;
}

/// <summary>What was asked of the database only a system Admin may do (e.g. drop a database a system Admin adopted).</summary>
public sealed class WorkspaceAdminOnlyException(string message, string environment)
    : WorkspaceDatabaseException(message, environment);

/// <summary>The workspace server is not set up for what TC Studio needs (<see cref="WorkspaceServerSetupException"/> said where).</summary>
public sealed class WorkspaceServerNotReadyException(string message, string environment, Exception? inner = null)
    : WorkspaceDatabaseException(message, environment, inner);

/// <summary>The workspace database cannot be reached (or its circuit is open); worth trying again after <see cref="RetryAfter"/>.</summary>
public sealed class WorkspaceDatabaseUnavailableException(string message, string environment, TimeSpan retryAfter,
    bool circuitOpen, Exception? inner = null) : WorkspaceDatabaseException(message, environment, inner)
{
    public TimeSpan RetryAfter { get; } = retryAfter;
    public bool CircuitOpen { get; } = circuitOpen;
}

/// <summary>The workspace database's base schema does not fit this build (behind, ahead, or tampered with).</summary>
public sealed class WorkspaceSchemaException(string message, string environment)
    : WorkspaceDatabaseException(message, environment);

/// <summary>The workspace database refused a statement (a procedure raised, a constraint failed...), with its number and message.</summary>
public sealed class WorkspaceSqlException(string message, string environment, object number, int? line, Exception inner)
    : WorkspaceDatabaseException(message, environment, inner)
{
    /// <summary>SQL Server's error number (an int), or PostgreSQL's SQLSTATE (a string such as "P0001" or "42501").</summary>
    public object Number { get; } = number;
    public int? Line { get; } = line;
}

/// <summary>A draft the server accepted but whose result may not stand (see <see cref="DraftRefusedException"/>), with the problems.</summary>
public sealed class WorkspaceDraftRefusedException(string message, string environment, SqlValidation validation, Exception? inner = null)
    : WorkspaceDatabaseException(message, environment, inner)
{
    public SqlValidation Validation { get; } = validation;
}

/// <summary>An execution ran past its timeout and was cancelled on the server.</summary>
public sealed class WorkspaceTimeoutException(string message, string environment, Exception? inner = null)
    : WorkspaceDatabaseException(message, environment, inner);

/// <summary>A parameter value does not fit the procedure's definition; names the parameter.</summary>
public sealed class WorkspaceParameterException(string parameter, string message, string environment)
    : WorkspaceDatabaseException(message, environment)
{
    public string Parameter { get; } = parameter;
}

/// <summary>What went wrong with a connection, in words that name no host, port or credential.</summary>
public static class WorkspaceFailures
{
    /// <summary>True for failures of reaching the database (as opposed to a statement it refused).</summary>
    public static bool IsConnectionFailure(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal)
            || pg.SqlState is PostgresErrorCodes.TooManyConnections or PostgresErrorCodes.CannotConnectNow
                or PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown
                or PostgresErrorCodes.InvalidPassword or PostgresErrorCodes.InvalidAuthorizationSpecification
                or PostgresErrorCodes.InvalidCatalogName,
        NpgsqlException => true,
        SqlException sql => sql.Number is -2 or 2 or 53 or 4060 or 18456 or 233 or 10053 or 10054 or 10060 or 10061 or 40613 or 64
            || sql.Class >= 20,
        SocketException or TimeoutException or Polly.Timeout.TimeoutRejectedException => true,
        System.IO.IOException => true,
        _ => e.InnerException is not null && IsConnectionFailure(e.InnerException),
    };

    /// <summary>
    /// Server messages with the connection's own role or login name taken out (e.g. a failed cast of current_user).
    /// Hygiene, not a secret: any published routine can read role names from the catalog; what keeps them useless is
    /// that nobody outside the service holds their passwords and CONNECT is revoked from PUBLIC.
    /// </summary>
    public static string Scrub(string message, string? principal) =>
        string.IsNullOrEmpty(principal)
            ? message
            // Whole names only: a login called "sa" must not turn "usage" into "u<workspace role>ge".
            : System.Text.RegularExpressions.Regex.Replace(message, $@"(?<![\w$]){System.Text.RegularExpressions.Regex.Escape(principal)}(?![\w$])",
                "<workspace role>",
                System.Text.RegularExpressions.RegexOptions.IgnoreCase | System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    public static string Describe(Exception e) => e switch
    {
        PostgresException { SqlState: PostgresErrorCodes.InvalidCatalogName } => "the database does not exist",
        PostgresException { SqlState: PostgresErrorCodes.InvalidPassword or PostgresErrorCodes.InvalidAuthorizationSpecification }
            => "the server refused the credentials (run the environment's migrate to repair its roles)",
        PostgresException { SqlState: PostgresErrorCodes.TooManyConnections } => "the server has too many connections",
        PostgresException { SqlState: PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown }
            => "the server is starting up or shutting down",
        PostgresException pg => $"{pg.SqlState} {pg.MessageText}",
        SqlException { Number: 4060 } => "the database does not exist or cannot be opened",
        SqlException { Number: 18456 } => "the server refused the credentials",
        SqlException { Number: -2 } => "the connection attempt timed out",
        SqlException sql => $"SQL Server error {sql.Number}",
        Polly.Timeout.TimeoutRejectedException or TimeoutException => "the connection attempt timed out",
        SocketException { SocketErrorCode: SocketError.ConnectionRefused } => "the server refused the connection (is it running?)",
        SocketException socket => $"network error ({socket.SocketErrorCode})",
        NpgsqlException { InnerException: { } inner } => Describe(inner),
        System.IO.IOException => "the connection was broken",
        NpgsqlException => "the connection failed",
        { InnerException: { } inner } => Describe(inner),
        _ => "the connection failed",
    };
}

/// <summary>A workspace server is not set up for what TC Studio needs (e.g. the provisioning functions are missing); the message says what to
/// run.</summary>
public sealed class WorkspaceServerSetupException(string message) : InvalidOperationException(message);
