using System.Diagnostics;
using System.Text.Json;
using Microsoft.Data.SqlClient;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// What the API and the worker do with workspace databases, on connections from <see cref="WorkspaceConnectionCache"/>:
/// provisioning, base-schema status, migrate and revert, and running provider operations. Every driver exception is
/// turned into a <see cref="WorkspaceDatabaseException"/> naming the environment (unreachable, refused
/// statement with the server's number, timeout), and every operation's duration is measured.
/// </summary>
public sealed class WorkspaceDatabaseService(WorkspaceConnectionCache cache, WorkspaceDatabaseMetrics metrics, IOptions<WorkspacesOptions> options,
    ILogger<WorkspaceDatabaseService> logger)
{
    public const string SchemaLock = "schema";

    /// <summary>The connection cache, for this layer's own use cases (and tests); callers ask this service instead.</summary>
    internal WorkspaceConnectionCache Cache => cache;
    public WorkspacesOptions Options => options.Value;

    public static WorkspaceTarget TargetOf(WorkspaceEnvironment environment, string workspaceSlug) =>
        new(environment.WorkspaceId, workspaceSlug, environment.Name, environment.Server, environment.DatabaseName, environment.Id);

    public static string ProcedureLock(string procedureName) => "procedure:" + procedureName.ToLowerInvariant();

    /// <summary>Runs <paramref name="work"/> on a connection of the environment's own pool (this layer's use cases and tests only).</summary>
    internal async Task<T> RunAsync<T>(WorkspaceTarget target, WorkspaceCredential credential,
        Func<WorkspaceConnectionLease, CancellationToken, Task<T>> work,
        CancellationToken cancellationToken)
    {
        await using var lease = await cache.OpenAsync(target, credential, cancellationToken);
        var stopwatch = Stopwatch.StartNew();
        try
        {
            return await work(lease, cancellationToken);
        }
        catch (Exception e) when (Translate(e, target.Environment, cancellationToken, PrincipalOf(lease.Connection)) is { } translated)
        {
            if (translated is WorkspaceDatabaseUnavailableException) lease.ReportConnectionFailure(e);
            throw translated;
        }
        finally
        {
            metrics.OperationDuration(lease.Provider.Name, stopwatch.Elapsed);
        }
    }

    /// <summary>Server-level work (create, prepare, drop a database) with the deploy credential, outside the cache.</summary>
    internal async Task<T> RunOnServerAsync<T>(WorkspaceTarget target,
        Func<IWorkspaceDatabaseProvider, WorkspaceServer, CancellationToken, Task<T>> work,
        CancellationToken cancellationToken)
    {
        var provider = cache.Validate(target, out var server);
        var stopwatch = Stopwatch.StartNew();
        try
        {
            return await work(provider, server, cancellationToken);
        }
        catch (Exception e) when (Translate(e, target.Environment, cancellationToken) is { } translated)
        {
            throw translated;
        }
        finally
        {
            metrics.OperationDuration(provider.Name, stopwatch.Elapsed);
        }
    }

    // ---- What callers ask of an environment's database (they never see the cache, a provider or a connection) ----

    /// <summary>Checks a draft without any database, in the dialect of <paramref name="provider"/> ('sqlserver' or 'postgres').</summary>
    public SqlValidation ValidateStatically(string provider, string procedureName, string sql) =>
        cache.ProviderFor(provider).ValidateStatically(procedureName, sql);

    /// <summary>Why <paramref name="database"/> cannot be a workspace database on <paramref name="server"/>, or null when it can.</summary>
    public string? FindDatabaseNameProblem(string database, WorkspaceServer server) =>
        WorkspaceDatabaseNames.FindProblem(database, server, cache.ProviderFor(server.Provider));

    /// <summary>How many base-schema migrations this build has for <paramref name="provider"/>.</summary>
    public int MigrationCount(string provider) => cache.ProviderFor(provider).Migrations.Count;

    /// <summary>The environment's circuit ('closed', 'open', 'half-open'), or null when it has no connections cached.</summary>
    public string? CircuitStateOf(Guid workspaceId, string environment) => cache.CircuitStateOf(workspaceId, environment);

    /// <summary>Static checks, then the database's own (in a transaction that is rolled back, where the dialect allows).</summary>
    public Task<SqlValidation> ValidateAsync(WorkspaceTarget target, string procedureName, string sql, CancellationToken cancellationToken) =>
        RunAsync(target, WorkspaceCredential.Deploy, (lease, ct) => lease.Provider.ValidateAsync(lease.Connection, procedureName, sql, ct),
            cancellationToken);

    /// <summary>The procedure's deployment in effect in the environment's database, or null.</summary>
    public Task<ProcedureDeployment?> ReadDeploymentAsync(WorkspaceTarget target, string procedureName, CancellationToken cancellationToken) =>
        RunAsync(target, WorkspaceCredential.Deploy, (lease, ct) => lease.Provider.ReadDeploymentAsync(lease.Connection, procedureName, ct),
            cancellationToken);

    /// <summary>Drops a deployed procedure (under its lock, taking turns with publishes); false when it was not deployed there.</summary>
    public Task<bool> DropProcedureAsync(WorkspaceTarget target, string procedureName, CancellationToken cancellationToken) =>
        RunAsync(target, WorkspaceCredential.Deploy, async (lease, ct) =>
        {
            await using var procedureLock = await lease.Provider.LockAsync(lease.Connection, ProcedureLock(procedureName), ct);
            return await lease.Provider.ReadDeploymentAsync(lease.Connection, procedureName, ct) is not null
                && await lease.Provider.DropAsync(lease.Connection, procedureName, ct);
        }, cancellationToken);

    /// <summary>
    /// Publishes a procedure: under its lock (publishes and drops of one procedure in one database take turns, across
    /// instances), validates <paramref name="sql"/> in the database, deploys it, then calls <paramref name="record"/>
    /// (the caller records the publish in the system database). If recording fails, the deploy is undone: the
    /// previous definition comes back (or the new procedure goes). From the deploy on, this runs to its end whatever
    /// the caller does meanwhile (recording and undoing get no cancellation token).
    /// </summary>
    public Task<PublishOutcome> PublishAsync(WorkspaceTarget target, string procedureName, string sql, string deployedBy,
        Func<ProcedureDeployment, Task> record, CancellationToken cancellationToken) =>
        RunAsync<PublishOutcome>(target, WorkspaceCredential.Deploy, async (lease, ct) =>
        {
            await using var procedureLock = await lease.Provider.LockAsync(lease.Connection, ProcedureLock(procedureName), ct);
            var validation = await lease.Provider.ValidateAsync(lease.Connection, procedureName, sql, ct);
            if (!validation.IsValid) return new PublishOutcome.Invalid(validation);

            var deployment = await lease.Provider.DeployAsync(lease.Connection, procedureName, sql, deployedBy, ct);
            try
            {
                await record(deployment);
                return new PublishOutcome.Published(deployment);
            }
            catch (Exception systemFailure)
            {
                try
                {
                    await lease.Provider.UndeployAsync(lease.Connection, procedureName, deployment, CancellationToken.None);
                }
                catch (Exception undoFailure)
                {
                    return new PublishOutcome.NotRecorded(deployment, systemFailure, undoFailure);
                }
                return new PublishOutcome.NotRecorded(deployment, systemFailure, UndoFailure: null);
            }
        }, cancellationToken);

    /// <summary>
    /// Creates the environment's database (it must not exist: an existing database is only ever adopted, by a system
    /// Admin), its roles, grants and marker. If anything after CREATE DATABASE fails, the database and roles go again.
    /// </summary>
    public Task ProvisionAsync(WorkspaceTarget target, WorkspaceOwnership ownership, CancellationToken cancellationToken) =>
        RunOnServerAsync(target, async (provider, server, ct) =>
        {
            if (await provider.DatabaseExistsAsync(server, target.Database, ct))
            {
                throw new WorkspaceOwnershipException($"Database '{target.Database}' already exists on server '{server.Name}' and was not created by "
                    + "this environment: choose another name. Only a system Admin may adopt an existing database (POST "
                    + ".../environments/{env}/adopt).",
                    target.Environment, field: "databaseName");
            }
            try
            {
                await provider.CreateDatabaseAsync(server, target.Database, ownership, ct);
            }
            catch
            {
                await QuietlyAsync(() => provider.DropRolesAsync(server, RoleNames(ownership), CancellationToken.None), target, "drop the roles");
                throw;
            }
            try
            {
                await provider.PrepareDatabaseAsync(server, target.Database, ownership, writeMarker: true, ct);
            }
            catch
            {
                // Made a moment ago by this call: dropped without the marker check (the marker may be what failed).
                cache.Evict(target.WorkspaceId, target.Environment, "provisioning failed");
                await QuietlyAsync(() => provider.DropDatabaseAsync(server, target.Database, RoleNames(ownership), CancellationToken.None), target,
                    "drop the database");
                throw;
            }
            return true;
        }, cancellationToken);

    /// <summary>Checks the marker names the environment, then repairs its roles (passwords set again) and grants.</summary>
    public Task PrepareAsync(WorkspaceTarget target, WorkspaceOwnership ownership, CancellationToken cancellationToken) =>
        RunOnServerAsync(target, async (provider, server, ct) =>
        {
            WorkspaceMarker.Verify(await provider.ReadMarkerAsync(server, target.Database, ct), ownership, target);
            await provider.PrepareDatabaseAsync(server, target.Database, ownership, writeMarker: false, ct);
            return true;
        }, cancellationToken);

    /// <summary>
    /// Gives an existing database to the environment (adoption, conversion): new roles take it over from
    /// <paramref name="previousRoles"/>, which are dropped; the marker is (re)written. The deploy credential must be
    /// able to own the database: one of another application is refused naming its owner.
    /// </summary>
    public Task TakeOverAsync(WorkspaceTarget target, WorkspaceOwnership ownership, IReadOnlyList<string> previousRoles, string? requiredOwner,
        CancellationToken cancellationToken) =>
        RunOnServerAsync(target, async (provider, server, ct) =>
        {
            var owner = await provider.DatabaseOwnerAsync(server, target.Database, ct);
            if (owner is null && !await provider.DatabaseExistsAsync(server, target.Database, ct))
            {
                throw new WorkspaceDatabaseUnavailableException(
                    $"Environment '{target.Environment}' cannot reach its database: database '{target.Database}' does not exist on "
                        + $"server '{server.Name}'.",
                    target.Environment, TimeSpan.FromSeconds(30), circuitOpen: false);
            }
            if (requiredOwner is not null && !string.Equals(owner, requiredOwner, StringComparison.Ordinal))
            {
                throw new WorkspaceOwnershipException($"Database '{target.Database}' on server '{server.Name}' is owned by '{owner}', not by role "
                    + $"'{requiredOwner}' that an earlier version of TC Studio would have created it with: it was attached, "
                    + "not created, so it is not "
                    + "converted. A system Admin may delete this environment (keeping the database) and adopt the database (POST "
                    + ".../environments/{env}/adopt).",
                    target.Environment);
            }
            try
            {
                await provider.TakeOverDatabaseAsync(server, target.Database, ownership, previousRoles, ct);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
            {
                throw new WorkspaceOwnershipException($"The deploy login of server '{server.Name}' may not take over database '{target.Database}' "
                    + $"(owned by '{owner}'): TC Studio only takes databases its login owns. The server's operator may hand it over first "
                    + $"(ALTER DATABASE {target.Database} OWNER TO <the deploy login>). ({e.MessageText})", target.Environment);
            }
            cache.Evict(target.WorkspaceId, target.Environment, "taken over");
            return true;
        }, cancellationToken);

    /// <summary>
    /// Drops the environment's database, only once its marker names this environment, then its roles. A database
    /// that is already gone only loses its roles.
    /// </summary>
    public Task DropDatabaseAsync(WorkspaceTarget target, WorkspaceOwnership ownership, CancellationToken cancellationToken)
    {
        cache.Evict(target.WorkspaceId, target.Environment, "database dropped");
        return RunOnServerAsync(target, async (provider, server, ct) =>
        {
            if (!await provider.DatabaseExistsAsync(server, target.Database, ct))
            {
                await provider.DropRolesAsync(server, RoleNames(ownership), ct);
                return true;
            }
            WorkspaceMarker.Verify(await provider.ReadMarkerAsync(server, target.Database, ct), ownership, target);
            await provider.DropDatabaseAsync(server, target.Database, RoleNames(ownership), ct);
            return true;
        }, cancellationToken);
    }

    /// <summary>Drops roles that own nothing (after a failed adoption or provisioning).</summary>
    public Task DropRolesAsync(WorkspaceTarget target, IReadOnlyList<string> roles, CancellationToken cancellationToken) =>
        RunOnServerAsync(target, async (provider, server, ct) =>
        {
            await provider.DropRolesAsync(server, roles, ct);
            return true;
        }, cancellationToken);

    /// <summary>The role (login) owning the target's database, null when it does not exist.</summary>
    public Task<string?> DatabaseOwnerAsync(WorkspaceTarget target, CancellationToken cancellationToken) =>
        RunOnServerAsync(target, (provider, server, ct) => provider.DatabaseOwnerAsync(server, target.Database, ct), cancellationToken);

    private static IReadOnlyList<string> RoleNames(WorkspaceOwnership ownership) => ownership.Roles?.Names.ToList() ?? [];

    private async Task QuietlyAsync(Func<Task> compensation, WorkspaceTarget target, string what)
    {
        try
        {
            await compensation();
        }
        catch (Exception e)
        {
            logger.LogWarning(e, "After a failed provisioning of {Environment}, could not {What}", target, what);
        }
    }

    /// <summary>The base schema's state; remembered per entry once current, re-read while it is not.</summary>
    public async Task<WorkspaceSchemaStatus> GetSchemaStatusAsync(WorkspaceTarget target, CancellationToken cancellationToken, bool refresh = false)
    {
        if (!refresh && cache.CachedSchema(target) is { State: WorkspaceSchemaState.Current } cached) return cached;
        var status = await RunAsync(target, WorkspaceCredential.Deploy, async (lease, ct) =>
            WorkspaceSchemaStatus.Evaluate(await lease.Provider.ReadAppliedMigrationsAsync(lease.Connection, ct), lease.Provider.Migrations),
            cancellationToken);
        cache.RememberSchema(target, status);
        return status;
    }

    /// <summary>Refuses a database whose schema is ahead or tampered with; with <paramref name="requireCurrent"/>, also one behind.</summary>
    public async Task EnsureSchemaAsync(WorkspaceTarget target, bool requireCurrent, CancellationToken cancellationToken)
    {
        var status = await GetSchemaStatusAsync(target, cancellationToken);
        if (status.State is WorkspaceSchemaState.Ahead or WorkspaceSchemaState.ChecksumMismatch
            || (requireCurrent && status.State == WorkspaceSchemaState.Behind))
        {
            throw new WorkspaceSchemaException($"Environment '{target.Environment}': {status.Problem}", target.Environment);
        }
    }

    public sealed record MigrationStep(WorkspaceMigration Migration, TimeSpan Duration);

    /// <summary>
    /// Checks the marker, repairs roles and grants, then applies pending migrations in order, under the database's
    /// schema lock.
    /// </summary>
    public async Task<IReadOnlyList<MigrationStep>> MigrateAsync(WorkspaceTarget target, WorkspaceOwnership ownership,
        Action<MigrationStep>? progress,
        CancellationToken cancellationToken)
    {
        await PrepareAsync(target, ownership, cancellationToken);

        var steps = await RunAsync(target, WorkspaceCredential.Deploy, async (lease, ct) =>
        {
            await using var schemaLock = await lease.Provider.LockAsync(lease.Connection, SchemaLock, ct);
            var status = WorkspaceSchemaStatus.Evaluate(await lease.Provider.ReadAppliedMigrationsAsync(lease.Connection, ct),
                lease.Provider.Migrations);
            if (status.State is WorkspaceSchemaState.Ahead or WorkspaceSchemaState.ChecksumMismatch)
            {
                throw new WorkspaceSchemaException($"Environment '{target.Environment}': {status.Problem}", target.Environment);
            }
            var applied = new List<MigrationStep>();
            foreach (var migration in lease.Provider.Migrations.Skip(status.Version))
            {
                var stopwatch = Stopwatch.StartNew();
                await lease.Provider.ApplyMigrationAsync(lease.Connection, migration, ct);
                var step = new MigrationStep(migration, stopwatch.Elapsed);
                applied.Add(step);
                progress?.Invoke(step);
            }
            return applied;
        }, cancellationToken);
        cache.RememberSchema(target, null);
        return steps;
    }

    /// <summary>Reverts the last applied migration, or down to <paramref name="toVersion"/> (0: everything).</summary>
    public async Task<IReadOnlyList<MigrationStep>> RevertAsync(WorkspaceTarget target, int? toVersion, Action<MigrationStep>? progress,
        CancellationToken cancellationToken)
    {
        var steps = await RunAsync(target, WorkspaceCredential.Deploy, async (lease, ct) =>
        {
            await using var schemaLock = await lease.Provider.LockAsync(lease.Connection, SchemaLock, ct);
            var status = WorkspaceSchemaStatus.Evaluate(await lease.Provider.ReadAppliedMigrationsAsync(lease.Connection, ct),
                lease.Provider.Migrations);
            if (status.State is WorkspaceSchemaState.Ahead or WorkspaceSchemaState.ChecksumMismatch)
            {
                throw new WorkspaceSchemaException($"Environment '{target.Environment}': {status.Problem}", target.Environment);
            }
            var keep = toVersion ?? Math.Max(0, status.Version - 1);
            var reverted = new List<MigrationStep>();
            foreach (var migration in lease.Provider.Migrations.Take(status.Version).Skip(keep).Reverse())
            {
                var stopwatch = Stopwatch.StartNew();
                await lease.Provider.RevertMigrationAsync(lease.Connection, migration, ct);
                var step = new MigrationStep(migration, stopwatch.Elapsed);
                reverted.Add(step);
                progress?.Invoke(step);
            }
            return reverted;
        }, cancellationToken);
        cache.RememberSchema(target, null);
        return steps;
    }

    /// <summary>
    /// Executes a deployed procedure with a server-side timeout: running past it is a <see cref="WorkspaceTimeoutException"/>;
    /// the caller's own cancellation (a disconnect) cancels the statement on the server and surfaces as cancellation.
    /// </summary>
    public async Task<ExecutionResult> ExecuteAsync(WorkspaceTarget target, string procedureName, IReadOnlyDictionary<string, JsonElement> parameters,
        ExecutionLimits limits, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // A backstop a little after the server's own statement timeout, for code that switches that off.
        timeout.CancelAfter(limits.Timeout + TimeSpan.FromSeconds(2));
        try
        {
            return await RunAsync(target, WorkspaceCredential.Execute, (lease, ct) =>
                lease.Provider.ExecuteAsync(lease.Connection, procedureName, parameters, limits, target.Environment, ct), timeout.Token);
        }
        catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new WorkspaceTimeoutException(TimeoutMessage(target, limits), target.Environment, e);
        }
        catch (WorkspaceTimeoutException e)
        {
            // The server's statement timeout fired: say which limit it was.
            throw new WorkspaceTimeoutException(TimeoutMessage(target, limits), target.Environment, e);
        }
    }

    private static string TimeoutMessage(WorkspaceTarget target, ExecutionLimits limits) =>
        $"The execution in environment '{target.Environment}' ran past its timeout ({limits.Timeout.TotalSeconds:0} s, "
            + "timeoutSeconds) and was cancelled.";

    /// <summary>The role or login a connection signed in as (taken out of the messages callers see).</summary>
    private static string? PrincipalOf(System.Data.Common.DbConnection connection) => connection switch
    {
        NpgsqlConnection npgsql => npgsql.UserName,
        SqlConnection sql => new SqlConnectionStringBuilder(sql.ConnectionString).UserID,
        _ => null,
    };

    /// <summary>What a driver exception means for the caller; null for exceptions that pass through unchanged.</summary>
    private static WorkspaceDatabaseException? Translate(Exception e, string environment, CancellationToken cancellationToken,
        string? principal = null)
    {
        switch (e)
        {
            case WorkspaceDatabaseException:
                return null;
            case WorkspaceServerSetupException setup:
                return new WorkspaceServerNotReadyException(setup.Message, environment, setup);
            case OperationCanceledException when cancellationToken.IsCancellationRequested:
                return null;
            case PostgresException { SqlState: PostgresErrorCodes.QueryCanceled } pg when !cancellationToken.IsCancellationRequested:
                return new WorkspaceTimeoutException($"The statement ran past its timeout in environment '{environment}'.", environment, pg);
            case SqlException { Number: -2 } sql:
                return new WorkspaceTimeoutException($"The statement ran past its timeout in environment '{environment}'.", environment, sql);
            case NpgsqlException { InnerException: TimeoutException } or TimeoutException when !cancellationToken.IsCancellationRequested:
                return new WorkspaceTimeoutException($"The statement ran past its timeout in environment '{environment}'.", environment, e);
        }
        if (WorkspaceFailures.IsConnectionFailure(e))
        {
            return new WorkspaceDatabaseUnavailableException(
                $"Environment '{environment}' lost its database connection: {WorkspaceFailures.Describe(e)}.", environment,
                TimeSpan.FromSeconds(5), circuitOpen: false, e);
        }
        return e switch
        {
            DraftRefusedException refused => new WorkspaceDraftRefusedException(
                $"Nothing was deployed to environment '{environment}': {refused.Message}", environment, refused.Validation, refused),
            PostgresException pg => new WorkspaceSqlException(WorkspaceFailures.Scrub(
                pg.MessageText + (pg.Detail is { Length: > 0 } detail ? $" ({detail})" : ""), principal), environment, pg.SqlState, line: null, pg),
            SqlException sql => new WorkspaceSqlException(WorkspaceFailures.Scrub(sql.Message, principal), environment, sql.Number, sql.LineNumber,
                sql),
            _ => null,
        };
    }
}

/// <summary>How a publish ended (<see cref="WorkspaceDatabaseService.PublishAsync"/>).</summary>
public abstract record PublishOutcome
{
    private PublishOutcome()
    {
    }

    /// <summary>Deployed and recorded.</summary>
    public sealed record Published(ProcedureDeployment Deployment) : PublishOutcome;

    /// <summary>The database's own checks refused the draft: nothing was deployed.</summary>
    public sealed record Invalid(SqlValidation Validation) : PublishOutcome;

    /// <summary>
    /// Deployed, but recording failed (<paramref name="SystemFailure"/>): the deploy was undone, unless
    /// <paramref name="UndoFailure"/> says that failed too (then the database runs the new version unrecorded).
    /// </summary>
    public sealed record NotRecorded(ProcedureDeployment Deployment, Exception SystemFailure, Exception? UndoFailure) : PublishOutcome;
}
