using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// What one kind of workspace database (its SQL dialect) knows how to do. Two implementations: SQL Server
/// (Microsoft.Data.SqlClient, T-SQL checked with ScriptDom) and PostgreSQL (Npgsql). Connections come from
/// <see cref="WorkspaceConnectionCache"/>; methods taking a <see cref="DbConnection"/> run on one it opened. Methods
/// throw the driver's own exceptions; <see cref="WorkspaceDatabaseService"/> turns them into
/// <see cref="WorkspaceDatabaseException"/>s that say which environment failed and how.
/// </summary>
public interface IWorkspaceDatabaseProvider
{
    /// <summary>'sqlserver' or 'postgres' (<see cref="SystemDatabase.Entities.WorkspaceProviders"/>).</summary>
    string Name { get; }

    /// <summary>The workspace base schema's migrations, in order (embedded resources).</summary>
    IReadOnlyList<WorkspaceMigration> Migrations { get; }

    /// <summary>Longest database name the server accepts.</summary>
    int MaxDatabaseNameLength { get; }

    /// <summary>
    /// The environment's own pools. Every connection they hand out is checked to be the environment's database (its
    /// marker names the environment) before it is used: a mismatch is a <see cref="WorkspaceOwnershipException"/>.
    /// </summary>
    IWorkspaceConnectionSource CreateConnectionSource(WorkspaceServer server, WorkspaceTarget target, WorkspaceOwnership ownership,
        string applicationName, WorkspacesOptions options);

    Task PingAsync(DbConnection connection, CancellationToken cancellationToken);

    // Server-level work, with the server's deploy credential, on connections of its own (never cached).
    Task<bool> DatabaseExistsAsync(WorkspaceServer server, string database, CancellationToken cancellationToken);

    /// <summary>The role (login) that owns the database, or null when it does not exist or the dialect has no such notion here.</summary>
    Task<string?> DatabaseOwnerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken);

    /// <summary>Creates the environment's roles (PostgreSQL) and the database, owned by the environment's owner role.</summary>
    Task CreateDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, CancellationToken cancellationToken);

    /// <summary>
    /// Idempotent: the environment's roles (passwords set again) and grants (PostgreSQL) or execute user (SQL Server);
    /// with <paramref name="writeMarker"/>, also writes the marker (provisioning, adoption, conversion only).
    /// </summary>
    Task PrepareDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, bool writeMarker,
        CancellationToken cancellationToken);

    /// <summary>
    /// Gives an existing database to the environment: its new roles take over the database and whatever
    /// <paramref name="previousRoles"/> (TC Studio roles of an earlier environment or version) own in it; those are
    /// then dropped. Then <see cref="PrepareDatabaseAsync"/> with the marker.
    /// </summary>
    Task TakeOverDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, IReadOnlyList<string> previousRoles,
        CancellationToken cancellationToken);

    /// <summary>The marker in the database, or null when it has none (or cannot be read).</summary>
    Task<WorkspaceMarker?> ReadMarkerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken);

    /// <summary>Drops the database (the caller has checked its marker) and then the given roles.</summary>
    Task DropDatabaseAsync(WorkspaceServer server, string database, IReadOnlyList<string> roles, CancellationToken cancellationToken);

    /// <summary>Drops TC Studio roles that own nothing any more (compensation after a failed provisioning).</summary>
    Task DropRolesAsync(WorkspaceServer server, IReadOnlyList<string> roles, CancellationToken cancellationToken);

    // The base schema (tcstudio schema, tcstudio_schema_migrations, procedure_deployments).
    Task<IReadOnlyList<AppliedWorkspaceMigration>> ReadAppliedMigrationsAsync(DbConnection connection, CancellationToken cancellationToken);
    Task ApplyMigrationAsync(DbConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken);
    Task RevertMigrationAsync(DbConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken);

    // Procedures.
    /// <summary>Checks a draft without any database: shape, name, refused constructs.</summary>
    SqlValidation ValidateStatically(string procedureName, string sql);

    /// <summary>Static checks, then the database's own (in a transaction that is rolled back, where the dialect allows).</summary>
    Task<SqlValidation> ValidateAsync(DbConnection connection, string procedureName, string sql, CancellationToken cancellationToken);

    /// <summary>
    /// A session lock on <paramref name="resource"/> in this database (across processes) until disposed: publishes and
    /// drops of one procedure ("procedure:&lt;name&gt;"), and migrations ("schema"), are serialized with it.
    /// </summary>
    Task<IAsyncDisposable> LockAsync(DbConnection connection, string resource, CancellationToken cancellationToken);

    /// <summary>CREATE OR ALTER / CREATE OR REPLACE in a transaction that also records the deployment (and the previous definition).</summary>
    Task<ProcedureDeployment> DeployAsync(DbConnection connection, string procedureName, string sql, string deployedBy,
        CancellationToken cancellationToken);

    /// <summary>Compensation: puts back the previous definition (or drops the procedure) and forgets the deployment.</summary>
    Task UndeployAsync(DbConnection connection, string procedureName, ProcedureDeployment deployment, CancellationToken cancellationToken);

    /// <summary>Drops the procedure and its deployment records; false when it was not there.</summary>
    Task<bool> DropAsync(DbConnection connection, string procedureName, CancellationToken cancellationToken);

    /// <summary>The latest deployment in effect, or null.</summary>
    Task<ProcedureDeployment?> ReadDeploymentAsync(DbConnection connection, string procedureName, CancellationToken cancellationToken);

    /// <summary>Runs the deployed procedure with parameters typed from its own catalog definition.</summary>
    Task<ExecutionResult> ExecuteAsync(DbConnection connection, string procedureName, IReadOnlyDictionary<string, JsonElement> parameters,
        ExecutionLimits limits, string environment, CancellationToken cancellationToken);
}

/// <summary>
/// The base of a dialect's provider: it works on its driver's own connection type (<typeparamref name="TConnection"/>),
/// and the one conversion from the cache's <see cref="DbConnection"/> happens here, not in every method.
/// </summary>
public abstract class WorkspaceDatabaseProvider<TConnection> : IWorkspaceDatabaseProvider where TConnection : DbConnection
{
    public abstract string Name { get; }
    public abstract IReadOnlyList<WorkspaceMigration> Migrations { get; }
    public abstract int MaxDatabaseNameLength { get; }

    public abstract IWorkspaceConnectionSource CreateConnectionSource(WorkspaceServer server, WorkspaceTarget target, WorkspaceOwnership ownership,
        string applicationName, WorkspacesOptions options);

    public abstract Task<bool> DatabaseExistsAsync(WorkspaceServer server, string database, CancellationToken cancellationToken);
    public abstract Task<string?> DatabaseOwnerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken);
    public abstract Task CreateDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership,
        CancellationToken cancellationToken);
    public abstract Task PrepareDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, bool writeMarker,
        CancellationToken cancellationToken);
    public abstract Task TakeOverDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership,
        IReadOnlyList<string> previousRoles,
        CancellationToken cancellationToken);
    public abstract Task<WorkspaceMarker?> ReadMarkerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken);
    public abstract Task DropDatabaseAsync(WorkspaceServer server, string database, IReadOnlyList<string> roles, CancellationToken cancellationToken);
    public abstract Task DropRolesAsync(WorkspaceServer server, IReadOnlyList<string> roles, CancellationToken cancellationToken);
    public abstract SqlValidation ValidateStatically(string procedureName, string sql);

    // The same operations as the interface's, on the driver's own connection.
    public abstract Task PingAsync(TConnection connection, CancellationToken cancellationToken);
    public abstract Task<IReadOnlyList<AppliedWorkspaceMigration>> ReadAppliedMigrationsAsync(TConnection connection,
        CancellationToken cancellationToken);
    public abstract Task ApplyMigrationAsync(TConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken);
    public abstract Task RevertMigrationAsync(TConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken);
    public abstract Task<SqlValidation> ValidateAsync(TConnection connection, string procedureName, string sql, CancellationToken cancellationToken);
    public abstract Task<IAsyncDisposable> LockAsync(TConnection connection, string resource, CancellationToken cancellationToken);
    public abstract Task<ProcedureDeployment> DeployAsync(TConnection connection, string procedureName, string sql, string deployedBy,
        CancellationToken cancellationToken);
    public abstract Task UndeployAsync(TConnection connection, string procedureName, ProcedureDeployment deployment,
        CancellationToken cancellationToken);
    public abstract Task<bool> DropAsync(TConnection connection, string procedureName, CancellationToken cancellationToken);
    public abstract Task<ProcedureDeployment?> ReadDeploymentAsync(TConnection connection, string procedureName, CancellationToken cancellationToken);
    public abstract Task<ExecutionResult> ExecuteAsync(TConnection connection, string procedureName,
        IReadOnlyDictionary<string, JsonElement> parameters,
        ExecutionLimits limits, string environment, CancellationToken cancellationToken);

    Task IWorkspaceDatabaseProvider.PingAsync(DbConnection connection, CancellationToken cancellationToken) =>
        PingAsync(Typed(connection), cancellationToken);
    Task<IReadOnlyList<AppliedWorkspaceMigration>> IWorkspaceDatabaseProvider.ReadAppliedMigrationsAsync(DbConnection connection,
        CancellationToken cancellationToken) => ReadAppliedMigrationsAsync(Typed(connection), cancellationToken);
    Task IWorkspaceDatabaseProvider.ApplyMigrationAsync(DbConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken) =>
        ApplyMigrationAsync(Typed(connection), migration, cancellationToken);
    Task IWorkspaceDatabaseProvider.RevertMigrationAsync(DbConnection connection, WorkspaceMigration migration,
        CancellationToken cancellationToken) =>
        RevertMigrationAsync(Typed(connection), migration, cancellationToken);
    Task<SqlValidation> IWorkspaceDatabaseProvider.ValidateAsync(DbConnection connection, string procedureName, string sql,
        CancellationToken cancellationToken) => ValidateAsync(Typed(connection), procedureName, sql, cancellationToken);
    Task<IAsyncDisposable> IWorkspaceDatabaseProvider.LockAsync(DbConnection connection, string resource, CancellationToken cancellationToken) =>
        LockAsync(Typed(connection), resource, cancellationToken);
    Task<ProcedureDeployment> IWorkspaceDatabaseProvider.DeployAsync(DbConnection connection, string procedureName, string sql, string deployedBy,
        CancellationToken cancellationToken) => DeployAsync(Typed(connection), procedureName, sql, deployedBy, cancellationToken);
    Task IWorkspaceDatabaseProvider.UndeployAsync(DbConnection connection, string procedureName, ProcedureDeployment deployment,
        CancellationToken cancellationToken) => UndeployAsync(Typed(connection), procedureName, deployment, cancellationToken);
    Task<bool> IWorkspaceDatabaseProvider.DropAsync(DbConnection connection, string procedureName, CancellationToken cancellationToken) =>
        DropAsync(Typed(connection), procedureName, cancellationToken);
    Task<ProcedureDeployment?> IWorkspaceDatabaseProvider.ReadDeploymentAsync(DbConnection connection, string procedureName,
        CancellationToken cancellationToken) => ReadDeploymentAsync(Typed(connection), procedureName, cancellationToken);
    Task<ExecutionResult> IWorkspaceDatabaseProvider.ExecuteAsync(DbConnection connection, string procedureName,
        IReadOnlyDictionary<string, JsonElement> parameters, ExecutionLimits limits, string environment, CancellationToken cancellationToken) =>
        ExecuteAsync(Typed(connection), procedureName, parameters, limits, environment, cancellationToken);

    /// <summary>Connections come from this provider's own connection source, so anything else is a bug, said as one.</summary>
    private TConnection Typed(DbConnection connection) => connection as TConnection
        ?? throw new InvalidOperationException($"The {Name} provider was given a {connection.GetType().Name}, not a {typeof(TConnection).Name}.");
}

/// <summary>Which credential a connection uses: the deploy one (DDL in this database) or the least-privilege execute one.</summary>
public enum WorkspaceCredential
{
    Deploy,
    Execute,
}

/// <summary>Opens connections to one workspace database through pools of its own.</summary>
public interface IWorkspaceConnectionSource : IAsyncDisposable
{
    Task<DbConnection> OpenAsync(WorkspaceCredential credential, CancellationToken cancellationToken);

    /// <summary>Closes idle pooled connections (after a failure, or when the entry is evicted).</summary>
    void ClearPools();
}

/// <summary>Where an environment's database is: resolved from its row in the system database.</summary>
public sealed record WorkspaceTarget(Guid WorkspaceId, string WorkspaceSlug, string Environment, string Server, string Database, Guid EnvironmentId)
{
    public override string ToString() => $"{WorkspaceSlug}/{Environment}";
}

public sealed record SqlProblem(int Line, int Column, string Message);

public sealed record SqlValidation(IReadOnlyList<SqlProblem> Errors)
{
    public static readonly SqlValidation Valid = new([]);
    public bool IsValid => Errors.Count == 0;
}

public sealed record WorkspaceMigration(int Version, string Name, string Up, string Down)
{
    public string Checksum { get; } = Checksums.Of(Up);
    public string Id => $"{Version:D4}_{Name}";
}

public sealed record AppliedWorkspaceMigration(int Version, string Name, string Checksum, DateTimeOffset AppliedAt, int DurationMs);

public sealed record ProcedureDeployment(long Id, string Procedure, string Checksum, DateTimeOffset DeployedAt, string DeployedBy,
    string? PreviousDefinition)
{
    /// <summary>The previous definitions one statement each, when the deploy that returned this record knows them (for its undo).</summary>
    public IReadOnlyList<string>? PreviousStatements { get; init; }
}

/// <summary>
/// The server accepted a draft's statement, but what it did may not stand (it did not create the named routine,
/// made it SECURITY DEFINER, or ended its transaction): nothing was kept.
/// </summary>
public sealed class DraftRefusedException(SqlValidation validation)
    : Exception(string.Join(" ", validation.Errors.Select(e => e.Message)))
{
    public SqlValidation Validation { get; } = validation;
}

/// <param name="MaxBytes">The cap on the results' size (Workspaces:MaxResultBytes): reading stops there and the command is cancelled.</param>
public sealed record ExecutionLimits(TimeSpan Timeout, int MaxRows, long MaxBytes = long.MaxValue);

public sealed record ExecutionColumn(string Name, string Type);

public sealed record ExecutionResultSet(IReadOnlyList<ExecutionColumn> Columns, IReadOnlyList<object?[]> Rows);

/// <param name="TruncatedReason">Why results were cut short: <c>rows</c> (maxRows) or <c>bytes</c> (Workspaces:MaxResultBytes); null when
/// complete.</param>
public sealed record ExecutionResult(IReadOnlyList<ExecutionResultSet> ResultSets, IReadOnlyDictionary<string, object?> OutputParameters,
    long? RowsAffected, long DurationMs, bool Truncated, string? TruncatedReason = null)
{
    public const string ByRows = "rows";
    public const string ByBytes = "bytes";
}

public static class Checksums
{
    /// <summary>SHA-256 of the text with line endings normalized (a checkout with CRLF must not look tampered).</summary>
    public static string Of(string text) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ReplaceLineEndings("\n"))));
}
