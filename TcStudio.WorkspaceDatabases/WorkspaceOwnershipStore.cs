using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.SystemDatabase.Entities;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Reads environments' claims (workspace_databases) for the connection cache, and turns claims into
/// <see cref="WorkspaceOwnership"/>s: the claim must be the target's (same server identity and database), its role
/// passwords are decrypted with <see cref="WorkspaceSecrets"/>.
/// </summary>
public sealed class WorkspaceOwnershipStore(IServiceScopeFactory scopes, WorkspaceSecrets secrets) : IWorkspaceOwnershipSource
{
    public async Task<WorkspaceOwnership> FindAsync(WorkspaceTarget target, WorkspaceServer server, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
        return Open(await FindClaimAsync(db, target.EnvironmentId, cancellationToken), target, server);
    }

    /// <summary>The environment's attached claim, or null (an environment made by an earlier version has none).</summary>
    public static Task<WorkspaceDatabase?> FindClaimAsync(TcStudioDbContext db, Guid environmentId, CancellationToken ct, bool tracked = false)
    {
        var query = db.WorkspaceDatabases.Where(d => d.EnvironmentId == environmentId && d.State == WorkspaceDatabaseStates.Attached);
        return (tracked ? query : query.AsNoTracking()).SingleOrDefaultAsync(ct);
    }

    /// <summary>The claim as an ownership, passwords decrypted; a missing, misdirected or unreadable claim is a WorkspaceOwnershipException saying
    /// what to do.</summary>
    public WorkspaceOwnership Open(WorkspaceDatabase? claim, WorkspaceTarget target, WorkspaceServer server)
    {
        var ownership = OpenWithoutPasswords(claim, target, server);
        if (claim!.OwnerRole is null) return ownership;
        try
        {
            return ownership with { Roles = DecryptRoles(claim) };
        }
        catch (CryptographicException)
        {
            throw new WorkspaceOwnershipException($"The passwords of environment '{target}''s roles cannot be read with {WorkspaceSecrets.KeyName} "
                + $"(was the key changed?). Run its migrate (POST .../environments/{target.Environment}/migrate) to give them new ones.",
                    target.Environment);
        }
    }

    /// <summary>The claim checked against the target, with role names and placeholder passwords (for work that never logs in as them).</summary>
    public static WorkspaceOwnership OpenWithoutPasswords(WorkspaceDatabase? claim, WorkspaceTarget target, WorkspaceServer server)
    {
        if (claim is null)
        {
            throw new WorkspaceOwnershipException($"Environment '{target}' has no claim on a database: it was made by an "
                + "earlier version of TC Studio. "
                + $"Run its migrate (POST .../environments/{target.Environment}/migrate, or the worker's 'workspaces migrate') to convert it.",
                    target.Environment);
        }
        if (!string.Equals(claim.ServerIdentity, server.Identity, StringComparison.Ordinal)
            || !string.Equals(claim.DatabaseName, target.Database, StringComparison.OrdinalIgnoreCase))
        {
            throw new WorkspaceOwnershipException($"Environment '{target}' claims database '{claim.DatabaseName}' on "
                + $"{claim.ServerIdentity}, but points at "
                + $"database '{target.Database}' on server '{server.Name}' ({server.Identity}); TC Studio will not use it.", target.Environment);
        }
        var roles = claim.OwnerRole is { } owner && claim.ExecuteRole is { } execute ? new WorkspaceRoleSet(owner, "", execute, "") : null;
        return new WorkspaceOwnership(claim.Id, claim.WorkspaceId, target.EnvironmentId, claim.ServerIdentity, claim.DatabaseName, roles);
    }

    public WorkspaceRoleSet DecryptRoles(WorkspaceDatabase claim)
    {
        if (claim.OwnerRole is null || claim.ExecuteRole is null || claim.OwnerSecret is null || claim.ExecuteSecret is null)
        {
            throw new CryptographicException("The claim holds no role passwords.");
        }
        return new WorkspaceRoleSet(claim.OwnerRole, secrets.Unprotect(claim.OwnerSecret, claim.OwnerRole),
            claim.ExecuteRole, secrets.Unprotect(claim.ExecuteSecret, claim.ExecuteRole));
    }

    /// <summary>
    /// New roles for the environment (PostgreSQL): named after its id, with new random passwords, stored encrypted on
    /// <paramref name="claim"/>. Returns them in clear for the provisioning that follows.
    /// </summary>
    public WorkspaceRoleSet IssueRoles(WorkspaceDatabase claim, Guid environmentId)
    {
        var roles = new WorkspaceRoleSet(PostgresWorkspaceRoles.Owner(environmentId), WorkspaceSecrets.NewPassword(),
            PostgresWorkspaceRoles.Execute(environmentId), WorkspaceSecrets.NewPassword());
        claim.OwnerRole = roles.OwnerRole;
        claim.ExecuteRole = roles.ExecuteRole;
        claim.OwnerSecret = secrets.Protect(roles.OwnerPassword, roles.OwnerRole);
        claim.ExecuteSecret = secrets.Protect(roles.ExecutePassword, roles.ExecuteRole);
        return roles;
    }
}
