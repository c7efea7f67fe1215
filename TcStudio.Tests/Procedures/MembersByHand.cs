using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Procedures;

/// <summary>
/// Workspace members written straight into the system database: the arrange step of tests about what a member may do,
/// without going through the members API those tests are not about.
/// </summary>
public static class MembersByHand
{
    /// <summary>Makes the existing user <paramref name="username"/> a <paramref name="role"/> of the workspace.</summary>
    public static Task AddMemberByHandAsync(this ApiFixture api, string slug, string username, string role) =>
        api.ExecuteAsync($"""
            INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
            SELECT w.id, u.id, '{role}', now() FROM workspaces w, users u WHERE w.slug = '{slug}' AND u.username = '{username}'
            """);

    /// <summary>A new user, signed in, with <paramref name="role"/> in the workspace.</summary>
    public static async Task<HttpClient> NewMemberClientAsync(this ApiFixture api, string slug, string role, string? prefix = null)
    {
        var username = $"{prefix ?? role.ToLowerInvariant()}-{Guid.NewGuid():N}"[..20];
        var client = await api.NewUserClientAsync(username);
        await api.AddMemberByHandAsync(slug, username, role);
        return client;
    }
}
