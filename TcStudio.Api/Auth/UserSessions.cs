using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.Extensions.Options;

namespace TcStudio.Api.Auth;

/// <summary>
/// Decides whether a signed, unexpired token still stands: its user exists, is active, is not deleted, and its
/// security stamp is current (a password change, deactivation or deletion changes or voids it, revoking every token).
/// The verdict is cached briefly per user so a request costs no extra query; changes made through this process evict
/// it at once (<see cref="Forget"/>), other instances notice within Auth:SessionCheckInterval.
/// The role in the token is replaced with the user's current role.
/// </summary>
public sealed class UserSessions(IServiceScopeFactory scopes, IOptions<AuthOptions> options, TimeProvider clock)
{
    private sealed record Session(Guid SecurityStamp, string Role, DateTimeOffset CheckedAt);

    private readonly ConcurrentDictionary<Guid, Session?> _sessions = new();

    public void Forget(Guid userId) => _sessions.TryRemove(userId, out _);

    public async Task<bool> ValidateAsync(ClaimsPrincipal principal, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(principal.FindFirstValue(TcStudioClaims.UserId), out var userId)
            || !Guid.TryParse(principal.FindFirstValue(TcStudioClaims.SecurityStamp), out var stamp))
        {
            return false;
        }

        var session = await GetSessionAsync(userId, cancellationToken);
        if (session is null || session.SecurityStamp != stamp) return false;

        if (principal.Identity is ClaimsIdentity identity && principal.FindFirstValue(TcStudioClaims.Role) != session.Role)
        {
            foreach (var stale in identity.FindAll(TcStudioClaims.Role).ToList()) identity.RemoveClaim(stale);
            identity.AddClaim(new Claim(TcStudioClaims.Role, session.Role));
        }
        return true;
    }

    private async Task<Session?> GetSessionAsync(Guid userId, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        if (_sessions.TryGetValue(userId, out var cached) && cached is not null
            && now - cached.CheckedAt < options.Value.SessionCheckInterval)
        {
            return cached;
        }

        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TcStudioDbContext>();
        var found = await LoadSession(db, userId);
        var session = found is null ? null : new Session(found.SecurityStamp, found.Role, now);
        if (session is null) _sessions.TryRemove(userId, out _);
        else _sessions[userId] = session;
        return session;
    }

    private sealed record SessionRow(Guid SecurityStamp, string Role);

    // The query filter already hides soft-deleted users.
    private static readonly Func<TcStudioDbContext, Guid, Task<SessionRow?>> LoadSession =
        EF.CompileAsyncQuery((TcStudioDbContext db, Guid id) => db.Users
            .Where(u => u.Id == id && u.IsActive)
            .Select(u => new SessionRow(u.SecurityStamp, u.Role!.Name))
            .FirstOrDefault());
}
