using System.Data.Common;
using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Npgsql;
using TcStudio.SystemDatabase.Entities;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// The life of an environment and its database, for the API and the worker alike: create (always a new database),
/// adopt (a system Admin attaches an existing one), migrate (which also converts an environment made by an earlier
/// version, and creates a seeded one's database), delete (drop or detach) and a workspace purge. Each step that
/// waits on a workspace server holds no system-database transaction; each leaves nothing half-made behind.
/// <para>Ownership is the claim row in workspace_databases: inserting it is the check (a database is claimed once per
/// server identity, whatever its state), never a check-then-insert. A detached claim stays: only a system Admin may
/// adopt that database again.</para>
/// </summary>
public sealed class EnvironmentProvisioning(
    TcStudioDbContext db,
    WorkspaceDatabaseService databases,
    WorkspaceOwnershipStore store,
    TimeProvider clock,
    ILogger<EnvironmentProvisioning> logger)
{
    public const string ClaimIndex = "ux_workspace_databases_server_identity_database_name";

    public enum Outcome { Created, Adopted, Converted, Migrated }

    public sealed record Result(WorkspaceEnvironment Environment, Outcome Outcome, IReadOnlyList<WorkspaceDatabaseService.MigrationStep> Applied,
        int SchemaVersion, IReadOnlyList<string> Notes);

    public enum Removal { Dropped, Detached, Unclaimed }

    // ---- Create ----

    /// <summary>A new environment with a new database (which must not exist), its roles, marker and base schema.</summary>
    public async Task<Result> CreateAsync(Guid workspaceId, string slug, string name, WorkspaceServer server, string database, bool isProduction,
        CancellationToken ct)
    {
        await CheckProviderAsync(workspaceId, name, server, ct);
        var environment = NewEnvironment(workspaceId, name, server, database);
        environment.IsProduction = isProduction;
        var claim = NewClaim(environment, server, database, WorkspaceDatabaseOrigins.Created);
        var roles = server.Provider == WorkspaceProviders.Postgres ? store.IssueRoles(claim, environment.Id) : null;
        db.WorkspaceEnvironments.Add(environment);
        db.WorkspaceDatabases.Add(claim);
        await SaveClaimAsync(name, server, database, ct);
        await CheckProviderRaceAsync(environment, server, claim.Id, ct);

        var target = WorkspaceDatabaseService.TargetOf(environment, slug);
        var ownership = Ownership(claim, environment, roles);
        var steps = await ProvisionNewAsync(target, ownership, environment.Id, claim.Id, ct);
        return await ReadyAsync(environment, target, steps, Outcome.Created, [], ct);
    }

    private async Task<IReadOnlyList<WorkspaceDatabaseService.MigrationStep>> ProvisionNewAsync(WorkspaceTarget target, WorkspaceOwnership ownership,
        Guid? environmentToForget, Guid claimId, CancellationToken ct)
    {
        try
        {
            await databases.ProvisionAsync(target, ownership, ct);
        }
        catch
        {
            await ForgetAsync(environmentToForget, claimId, target);
            throw;
        }
        try
        {
            return await databases.MigrateAsync(target, ownership, progress: null, ct);
        }
        catch
        {
            await QuietlyAsync(() => databases.DropDatabaseAsync(target, ownership, CancellationToken.None), target, "drop the database it created");
            await ForgetAsync(environmentToForget, claimId, target);
            throw;
        }
    }

    // ---- Adopt ----

    /// <summary>
    /// System Admins only (the caller checks): a new environment on an existing database that no environment holds.
    /// A detached database (kept when its environment was deleted or its workspace purged) is re-attached and taken
    /// over from its old roles; an unclaimed one must be owned by the server's deploy login (the operator hands a
    /// database of another application over explicitly). A database attached to any environment is refused.
    /// </summary>
    public async Task<Result> AdoptAsync(Guid workspaceId, string slug, string name, WorkspaceServer server, string database, bool isProduction,
        CancellationToken ct)
    {
        await CheckProviderAsync(workspaceId, name, server, ct);
        var environment = NewEnvironment(workspaceId, name, server, database);
        environment.IsProduction = isProduction;
        db.WorkspaceEnvironments.Add(environment);
        await db.SaveChangesAsync(ct); // a taken name → 23505 (the API answers 409 naming "name")
        await CheckProviderRaceAsync(environment, server, claimId: null, ct);

        var target = WorkspaceDatabaseService.TargetOf(environment, slug);
        bool exists;
        try
        {
            exists = await databases.RunOnServerAsync(target, (provider, s, token) => provider.DatabaseExistsAsync(s, database, token), ct);
        }
        catch
        {
            await ForgetAsync(environment.Id, null, target);
            throw;
        }
        if (!exists)
        {
            await ForgetAsync(environment.Id, null, target);
            throw new WorkspaceTargetException($"Database '{database}' does not exist on server '{server.Name}': there is nothing to adopt.", name,
                field: "databaseName");
        }

        var claim = NewClaim(environment, server, database, WorkspaceDatabaseOrigins.Adopted);
        var roles = server.Provider == WorkspaceProviders.Postgres ? store.IssueRoles(claim, environment.Id) : null;
        var previous = await ReattachDetachedAsync(claim, ct);
        if (previous is null)
        {
            db.WorkspaceDatabases.Add(claim);
            try
            {
                await SaveClaimAsync(name, server, database, ct, attachedElsewhere: true);
            }
            catch
            {
                await ForgetAsync(environment.Id, null, target);
                throw;
            }
        }
        var ownership = Ownership(claim, environment, roles) with { DatabaseId = previous?.Id ?? claim.Id };

        try
        {
            await databases.TakeOverAsync(target, ownership, previous?.Roles ?? [], requiredOwner: null, ct);
        }
        catch
        {
            await UndoTakeOverAsync(environment, target, ownership, previous, ct);
            throw;
        }
        IReadOnlyList<WorkspaceDatabaseService.MigrationStep> steps;
        try
        {
            steps = await databases.MigrateAsync(target, ownership, progress: null, ct);
        }
        catch
        {
            await UndoTakeOverAsync(environment, target, ownership, previous, ct);
            throw;
        }
        var notes = previous is null ? new List<string>() : [$"re-attached database '{database}', detached since its environment went"];
        return await ReadyAsync(environment, target, steps, Outcome.Adopted, notes, ct);
    }

    private sealed record Reattached(Guid Id, IReadOnlyList<string> Roles);

    /// <summary>
    /// One statement: a detached claim on the database becomes this environment's (its old role names returned), or
    /// nothing happens. The claim may be another (purged) workspace's, which row-level security hides: the statement is
    /// the SECURITY DEFINER function <c>reattach_detached_database</c> (migration LeastPrivilege).
    /// </summary>
    private async Task<Reattached?> ReattachDetachedAsync(WorkspaceDatabase claim, CancellationToken ct)
    {
        static NpgsqlParameter Text(string? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text };
        static NpgsqlParameter Bytes(byte[]? value)
            => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bytea };
        var rows = await db.Database.SqlQuery<ReattachedRow>($"""
            SELECT * FROM reattach_detached_database({claim.EnvironmentId!.Value}, {claim.WorkspaceId}, {Text(claim.Server)},
                {Text(claim.OwnerRole)}, {Text(claim.ExecuteRole)}, {Bytes(claim.OwnerSecret)}, {Bytes(claim.ExecuteSecret)},
                {clock.GetUtcNow()}, {Text(claim.ServerIdentity)}, {Text(claim.DatabaseName)})
            """).ToListAsync(ct);
        if (rows is not [var row]) return null;
        return new Reattached(row.Id, new[] { row.PreviousOwnerRole, row.PreviousExecuteRole }.OfType<string>().ToList());
    }

    private sealed record ReattachedRow(Guid Id, string? PreviousOwnerRole, string? PreviousExecuteRole);

    /// <summary>
    /// After a failed adoption: the environment goes. The claim goes back to what it was (detached), or goes if it
    /// was new; but a database the new roles already own stays claimed, detached, so nobody else can take it and a
    /// system Admin can try again.
    /// </summary>
    private async Task UndoTakeOverAsync(WorkspaceEnvironment environment, WorkspaceTarget target, WorkspaceOwnership ownership, Reattached? previous,
        CancellationToken ct)
    {
        string? owner = null;
        try
        {
            owner = await databases.DatabaseOwnerAsync(target, CancellationToken.None);
        }
        catch (WorkspaceDatabaseException e)
        {
            logger.LogWarning(e, "After a failed adoption of {Environment}, could not read its database's owner", target);
        }
        var takenOver = ownership.Roles is { } roles && owner == roles.OwnerRole;
        var now = clock.GetUtcNow();
        db.ChangeTracker.Clear();
        if (previous is not null || takenOver)
        {
            var keepRoles = takenOver || previous is null ? ownership.Roles?.Names.ToArray() : previous.Roles.ToArray();
            var keptOwner = keepRoles?.FirstOrDefault(r => r.EndsWith("_owner", StringComparison.Ordinal));
            var keptExecute = keepRoles?.FirstOrDefault(r => r.EndsWith("_exec", StringComparison.Ordinal));
            await db.WorkspaceDatabases.Where(d => d.Id == ownership.DatabaseId).ExecuteUpdateAsync(set => set
                .SetProperty(d => d.State, WorkspaceDatabaseStates.Detached)
                .SetProperty(d => d.EnvironmentId, (Guid?)null)
                .SetProperty(d => d.OwnerRole, keptOwner)
                .SetProperty(d => d.ExecuteRole, keptExecute)
                .SetProperty(d => d.OwnerSecret, (byte[]?)null)
                .SetProperty(d => d.ExecuteSecret, (byte[]?)null)
                .SetProperty(d => d.DetachedAt, now)
                .SetProperty(d => d.UpdatedAt, now), CancellationToken.None);
            if (!takenOver && ownership.Roles is not null)
            {
                await QuietlyAsync(() => databases.DropRolesAsync(target, ownership.Roles.Names.ToList(), CancellationToken.None), target,
                    "drop the new roles");
            }
        }
        else
        {
            await db.WorkspaceDatabases.Where(d => d.Id == ownership.DatabaseId).ExecuteDeleteAsync(CancellationToken.None);
            if (ownership.Roles is not null)
            {
                await QuietlyAsync(() => databases.DropRolesAsync(target, ownership.Roles.Names.ToList(), CancellationToken.None), target,
                    "drop the new roles");
            }
        }
        await ForgetAsync(environment.Id, null, target);
    }

    // ---- Migrate (and convert) ----

    /// <summary>
    /// Brings the environment's database up to date: checks its marker, repairs roles and grants, applies pending
    /// base-schema migrations. An environment without a claim is one made by an earlier version (converted: new
    /// per-environment roles take its database over from the per-database ones, which are dropped; marker and claim
    /// written), or a seeded one never provisioned (its database is created).
    /// </summary>
    public async Task<Result> MigrateAsync(WorkspaceEnvironment environment, string slug, Action<WorkspaceDatabaseService.MigrationStep>? progress,
        CancellationToken ct)
    {
        var target = WorkspaceDatabaseService.TargetOf(environment, slug);
        databases.Cache.Validate(target, out var server);
        var claim = await WorkspaceOwnershipStore.FindClaimAsync(db, environment.Id, ct, tracked: true);
        if (claim is null) return await ConvertOrCreateAsync(environment, target, server, progress, ct);

        var notes = new List<string>();
        var ownership = WorkspaceOwnershipStore.OpenWithoutPasswords(claim, target, server);
        if (ownership.Roles is not null)
        {
            WorkspaceRoleSet roles;
            try
            {
                roles = store.DecryptRoles(claim);
            }
            catch (CryptographicException)
            {
                // Workspaces:SecretKey changed (or the claim lost its passwords): new ones, set on the server below.
                roles = store.IssueRoles(claim, environment.Id);
                await db.SaveChangesAsync(ct);
                databases.Cache.Evict(environment.WorkspaceId, environment.Name, "new role passwords");
                notes.Add("gave the environment's roles new passwords (the stored ones could not be read with the current key)");
            }
            ownership = ownership with { Roles = roles };
            await FinishTakeOverIfInterruptedAsync(target, ownership, notes, ct);
        }
        var steps = await databases.MigrateAsync(target, ownership, progress, ct);
        return await ReadyAsync(environment, target, steps, Outcome.Migrated, notes, ct);
    }

    /// <summary>
    /// A conversion or adoption that stopped after the environment's owner role took the database over but before the
    /// marker was written: only this environment's own role can own it, so the take-over is finished.
    /// </summary>
    private async Task FinishTakeOverIfInterruptedAsync(WorkspaceTarget target, WorkspaceOwnership ownership, List<string> notes,
        CancellationToken ct)
    {
        var marker = await databases.RunOnServerAsync(target, async (provider, server, token) =>
            await provider.DatabaseExistsAsync(server, target.Database, token) ? await provider.ReadMarkerAsync(server, target.Database, token)
                : null, ct);
        if (marker is not null) return;
        if (await databases.DatabaseOwnerAsync(target, ct) != ownership.Roles!.OwnerRole) return; // PrepareAsync then refuses it, naming both sides
        var legacy = PostgresWorkspaceRoles.Legacy(target.Database);
        await databases.TakeOverAsync(target, ownership, [legacy.Owner, legacy.Execute], requiredOwner: null, ct);
        notes.Add("finished taking the database over (its marker was missing)");
    }

    private async Task<Result> ConvertOrCreateAsync(WorkspaceEnvironment environment, WorkspaceTarget target, WorkspaceServer server,
        Action<WorkspaceDatabaseService.MigrationStep>? progress, CancellationToken ct)
    {
        var exists = await databases.RunOnServerAsync(target, (provider, s, token) => provider.DatabaseExistsAsync(s, target.Database, token), ct);
        var claim = NewClaim(environment, server, target.Database, WorkspaceDatabaseOrigins.Created);
        var roles = server.Provider == WorkspaceProviders.Postgres ? store.IssueRoles(claim, environment.Id) : null;
        db.WorkspaceDatabases.Add(claim);
        await SaveClaimAsync(environment.Name, server, target.Database, ct);
        var ownership = Ownership(claim, environment, roles);

        if (!exists && environment is { Status: EnvironmentStatus.Pending, SchemaVersion: 0 })
        {
            // Seeded and never provisioned: its database is created like any new environment's.
            var created = await ProvisionNewAsync(target, ownership, environmentToForget: null, claim.Id, ct);
            return await ReadyAsync(environment, target, created, Outcome.Created, [$"created database {target.Database}"], ct);
        }

        // Made by an earlier version: per-database roles, no marker, no claim. Only a database that version created
        // (owned by its per-database owner role) is converted; one it merely attached is left for a system Admin.
        var legacy = PostgresWorkspaceRoles.Legacy(target.Database);
        var isPostgres = server.Provider == WorkspaceProviders.Postgres;
        try
        {
            await databases.TakeOverAsync(target, ownership, isPostgres ? [legacy.Owner, legacy.Execute] : [],
                requiredOwner: isPostgres ? legacy.Owner : null, ct);
        }
        catch
        {
            await UndoConversionAsync(target, ownership, claim.Id);
            throw;
        }
        var steps = await databases.MigrateAsync(target, ownership, progress, ct);
        return await ReadyAsync(environment, target, steps, Outcome.Converted,
            [isPostgres ? "converted: per-environment roles, ownership marker and claim (the per-database roles are dropped)"
                : "converted: ownership marker and claim"], ct);
    }

    private async Task UndoConversionAsync(WorkspaceTarget target, WorkspaceOwnership ownership, Guid claimId)
    {
        string? owner = null;
        try
        {
            owner = await databases.DatabaseOwnerAsync(target, CancellationToken.None);
        }
        catch (WorkspaceDatabaseException)
        {
            // Unreachable: treated as not taken over.
        }
        if (ownership.Roles is { } roles && owner == roles.OwnerRole) return; // taken over: the claim stays; the next migrate finishes it
        db.ChangeTracker.Clear();
        await db.WorkspaceDatabases.Where(d => d.Id == claimId).ExecuteDeleteAsync(CancellationToken.None);
        if (ownership.Roles is not null)
        {
            await QuietlyAsync(() => databases.DropRolesAsync(target, ownership.Roles.Names.ToList(), CancellationToken.None), target,
                "drop the new roles");
        }
    }

    // ---- Delete, purge ----

    /// <summary>
    /// Before an environment's row is deleted (by the caller, with its activity, in one SaveChanges): its database is
    /// dropped (<paramref name="dropDatabase"/>: only if its marker names the environment; an adopted database only by
    /// a system Admin) and its claim removed, or else its claim is detached (tracked changes the caller saves).
    /// </summary>
    public async Task<Removal> PrepareRemovalAsync(WorkspaceEnvironment environment, string slug, bool dropDatabase, bool callerIsSystemAdmin,
        CancellationToken ct)
    {
        var target = WorkspaceDatabaseService.TargetOf(environment, slug);
        var claim = await WorkspaceOwnershipStore.FindClaimAsync(db, environment.Id, ct, tracked: true);
        if (claim is null)
        {
            if (dropDatabase)
            {
                throw new WorkspaceOwnershipException($"Environment '{target}' was made by an earlier version of TC Studio and holds no claim on its "
                    + "database, so TC Studio will not drop it. Migrate the environment first (it is then converted), or delete "
                    + "it keeping the database.",
                    environment.Name);
            }
            return Removal.Unclaimed;
        }
        if (!dropDatabase)
        {
            Detach(claim);
            databases.Cache.Evict(environment.WorkspaceId, environment.Name, "environment deleted");
            return Removal.Detached;
        }
        if (claim.Origin == WorkspaceDatabaseOrigins.Adopted && !callerIsSystemAdmin)
        {
            throw new WorkspaceAdminOnlyException($"Database '{claim.DatabaseName}' was adopted by a system Admin, not created by "
                + "TC Studio: only a system "
                + "Admin may drop it. Delete the environment without dropDatabase to keep it.", environment.Name);
        }
        databases.Cache.Validate(target, out var server);
        await databases.DropDatabaseAsync(target, WorkspaceOwnershipStore.OpenWithoutPasswords(claim, target, server), ct);
        db.WorkspaceDatabases.Remove(claim);
        return Removal.Dropped;
    }

    /// <summary>
    /// A workspace purge: with <paramref name="dropDatabases"/> each attached database is dropped first (marker
    /// checked, claim removed); then, in one transaction, the remaining claims are detached (they stay claimed), the
    /// workspace and everything under it is deleted, and <paramref name="record"/> adds the caller's activity.
    /// Returns the databases dropped.
    /// </summary>
    public async Task<IReadOnlyList<string>> PurgeWorkspaceAsync(Guid workspaceId, string slug, bool dropDatabases,
        Action<TcStudioDbContext, IReadOnlyList<string>> record, CancellationToken ct)
    {
        var dropped = new List<string>();
        if (dropDatabases)
        {
            var environments = await db.WorkspaceEnvironments.IgnoreQueryFilters().AsNoTracking()
                .Where(e => e.WorkspaceId == workspaceId).OrderBy(e => e.Name).ToListAsync(ct);
            foreach (var environment in environments)
            {
                db.ChangeTracker.Clear();
                if (await PrepareRemovalAsync(environment, slug, dropDatabase: true, callerIsSystemAdmin: true, ct) != Removal.Dropped) continue;
                // The claim and environment of a dropped database go at once: a purge refused half-way (a database that
                // is not the environment's) leaves nothing pointing at a dropped database.
                db.WorkspaceEnvironments.Remove(environment);
                await db.SaveChangesAsync(CancellationToken.None);
                dropped.Add(environment.DatabaseName);
            }
        }

        db.ChangeTracker.Clear();
        var now = clock.GetUtcNow();
        var strategy = db.Database.CreateExecutionStrategy();
        await strategy.ExecuteAsync(async token =>
        {
            db.ChangeTracker.Clear();
            await using var transaction = await db.Database.BeginTransactionAsync(token);
            await db.WorkspaceDatabases.Where(d => d.WorkspaceId == workspaceId && d.State == WorkspaceDatabaseStates.Attached)
                .ExecuteUpdateAsync(set => set
                    .SetProperty(d => d.State, WorkspaceDatabaseStates.Detached)
                    .SetProperty(d => d.EnvironmentId, (Guid?)null)
                    .SetProperty(d => d.OwnerSecret, (byte[]?)null)
                    .SetProperty(d => d.ExecuteSecret, (byte[]?)null)
                    .SetProperty(d => d.DetachedAt, now)
                    .SetProperty(d => d.UpdatedAt, now), token);
            await db.Workspaces.IgnoreQueryFilters().Where(w => w.Id == workspaceId).ExecuteDeleteAsync(token);
            record(db, dropped);
            await db.SaveChangesAsync(token);
            await transaction.CommitAsync(token);
        }, ct);
        return dropped;
    }

    private void Detach(WorkspaceDatabase claim)
    {
        // Still claimed: never claimable by another user; a system Admin may adopt it. Its roles stay (they own it)
        // but nobody keeps their passwords any more.
        claim.State = WorkspaceDatabaseStates.Detached;
        claim.EnvironmentId = null;
        claim.OwnerSecret = null;
        claim.ExecuteSecret = null;
        claim.DetachedAt = clock.GetUtcNow();
    }

    // ---- Shared ----

    private static WorkspaceEnvironment NewEnvironment(Guid workspaceId, string name, WorkspaceServer server, string database) => new()
    {
        WorkspaceId = workspaceId,
        Name = name,
        Provider = server.Provider,
        Server = server.Name,
        DatabaseName = database,
    };

    private static WorkspaceDatabase NewClaim(WorkspaceEnvironment environment, WorkspaceServer server, string database, string origin) => new()
    {
        ServerIdentity = server.Identity,
        Server = server.Name,
        Provider = server.Provider,
        DatabaseName = database,
        WorkspaceId = environment.WorkspaceId,
        EnvironmentId = environment.Id,
        State = WorkspaceDatabaseStates.Attached,
        Origin = origin,
    };

    private static WorkspaceOwnership Ownership(WorkspaceDatabase claim, WorkspaceEnvironment environment, WorkspaceRoleSet? roles) =>
        new(claim.Id, environment.WorkspaceId, environment.Id, claim.ServerIdentity, claim.DatabaseName, roles);

    /// <summary>Saves the pending claim (and environment); the claim's unique index refusing it is a WorkspaceOwnershipException on
    /// databaseName.</summary>
    private async Task SaveClaimAsync(string environment, WorkspaceServer server, string database, CancellationToken ct,
        bool attachedElsewhere = false)
    {
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation,
            ConstraintName: ClaimIndex })
        {
            db.ChangeTracker.Clear();
            throw new WorkspaceOwnershipException(attachedElsewhere
                    ? $"Database '{database}' on server '{server.Name}' belongs to another environment; it cannot be adopted while it is attached."
                    : $"Database '{database}' on server '{server.Name}' is already claimed by TC Studio (by another "
                        + "environment, or kept detached after "
                      + "one was deleted): choose another name. Only a system Admin may adopt a detached database.",
                environment, field: "databaseName");
        }
    }

    private async Task CheckProviderAsync(Guid workspaceId, string name, WorkspaceServer server, CancellationToken ct)
    {
        if (await db.WorkspaceEnvironments.AnyAsync(e => e.WorkspaceId == workspaceId && e.Provider != server.Provider, ct))
        {
            throw ProviderConflict(name, server);
        }
    }

    /// <summary>
    /// The first environment sets the workspace's provider. Two creates racing with different providers both see each
    /// other once inserted: the later one (ids are time-ordered) backs off.
    /// </summary>
    private async Task CheckProviderRaceAsync(WorkspaceEnvironment environment, WorkspaceServer server, Guid? claimId, CancellationToken ct)
    {
        if (await db.WorkspaceEnvironments.AnyAsync(e => e.WorkspaceId == environment.WorkspaceId && e.Provider != environment.Provider
                && e.Id.CompareTo(environment.Id) < 0, ct))
        {
            await ForgetAsync(environment.Id, claimId, null);
            throw ProviderConflict(environment.Name, server);
        }
    }

    private static WorkspaceTargetException ProviderConflict(string environment, WorkspaceServer server) =>
        new($"This workspace's environments use another provider; server '{server.Name}' is {server.Provider}. "
            + "All environments of a workspace share one SQL dialect.", environment, field: "server");

    /// <summary>Removes what a failed step inserted: the claim, then the environment row.</summary>
    private async Task ForgetAsync(Guid? environmentId, Guid? claimId, WorkspaceTarget? target)
    {
        db.ChangeTracker.Clear();
        if (claimId is { } claim) await db.WorkspaceDatabases.Where(d => d.Id == claim).ExecuteDeleteAsync(CancellationToken.None);
        if (environmentId is { } id) await db.WorkspaceEnvironments.Where(e => e.Id == id).ExecuteDeleteAsync(CancellationToken.None);
        if (target is not null) databases.Cache.Evict(target.WorkspaceId, target.Environment, "provisioning failed");
    }

    private async Task<Result> ReadyAsync(WorkspaceEnvironment environment, WorkspaceTarget target,
        IReadOnlyList<WorkspaceDatabaseService.MigrationStep> steps, Outcome outcome, IReadOnlyList<string> notes, CancellationToken ct)
    {
        var version = (await databases.GetSchemaStatusAsync(target, ct, refresh: true)).Version;
        await WorkspaceEnvironmentState.RecordAsync(db, environment.Id, version, EnvironmentStatus.Ready, null, clock, CancellationToken.None);
        db.ChangeTracker.Clear();
        var saved = await db.WorkspaceEnvironments.AsNoTracking().SingleAsync(e => e.Id == environment.Id, CancellationToken.None);
        return new Result(saved, outcome, steps, version, notes);
    }

    private async Task QuietlyAsync(Func<Task> compensation, WorkspaceTarget target, string what)
    {
        try
        {
            await compensation();
        }
        catch (Exception e) when (e is WorkspaceDatabaseException or DbException or InvalidOperationException)
        {
            logger.LogWarning(e, "After a failed step of {Environment}, could not {What}", target, what);
        }
    }
}
