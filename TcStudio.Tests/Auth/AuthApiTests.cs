using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using TcStudio.Api.Auth;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Roles;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Auth;

public sealed class AuthApiTests(AuthApiTests.Fixture api) : IClassFixture<AuthApiTests.Fixture>
{
    /// <summary>Low login limits and no session caching, so the scenarios run fast.</summary>
    public sealed class Fixture(PostgresServer server) : ApiFixture(server)
    {
        protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("Auth:LoginRateLimit:PermitLimitPerUsername", "3"),
            new("Auth:LoginRateLimit:PermitLimitPerAddress", "1000"),
            new("Auth:SessionCheckInterval", "00:00:00"),
        ];
    }

    [Fact]
    public async Task A_correct_login_returns_a_bearer_token_that_opens_the_api()
    {
        using var anonymous = api.CreateAnonymousClient();
        var response = await anonymous.PostAsJsonAsync("/api/auth/token", new { username = "ADMIN", password = ApiFixture.AdminPassword });
        var token = await HttpAssert.ReadAsync<TokenResponse>(response);
        Assert.False(string.IsNullOrEmpty(token.AccessToken));
        var expiresAt = token.ExpiresAt;
        Assert.InRange(expiresAt - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(58), TimeSpan.FromMinutes(61));

        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.AccessToken);
        var me = await HttpAssert.ReadAsync<MeResponse>(await anonymous.GetAsync("/api/me"));
        Assert.Equal("admin", me.Username);
        Assert.Equal("Admin", me.Role);
        Assert.Equal("twsbp", me.Workspaces[0].Slug);
    }

    [Fact]
    public async Task Wrong_username_and_wrong_password_look_the_same()
    {
        using var anonymous = api.CreateAnonymousClient();
        var wrongPassword = await HttpAssert.ProblemAsync(
            await anonymous.PostAsJsonAsync("/api/auth/token", new { username = "user", password = "nope" }), HttpStatusCode.Unauthorized);
        var wrongUser = await HttpAssert.ProblemAsync(
            await anonymous.PostAsJsonAsync("/api/auth/token", new { username = "nobody-here", password = "nope" }), HttpStatusCode.Unauthorized);

        Assert.Equal(wrongPassword.GetProperty("detail").GetString(), wrongUser.GetProperty("detail").GetString());
        Assert.Equal(wrongPassword.GetProperty("title").GetString(), wrongUser.GetProperty("title").GetString());
    }

    [Fact]
    public async Task Requests_without_a_valid_token_are_401_problems()
    {
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.GetAsync("/api/me"), HttpStatusCode.Unauthorized);

        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "not.a.token");
        await HttpAssert.ProblemAsync(await anonymous.GetAsync("/api/workspaces"), HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task Repeated_failures_for_one_username_are_rate_limited_even_with_the_right_password()
    {
        using var admin = await api.AdminAsync();
        using var victim = await api.NewUserClientAsync("ratelimited", password: "right-password-1");
        using var anonymous = api.CreateAnonymousClient();
        for (var i = 0; i < 3; i++)
        {
            await HttpAssert.ProblemAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
                new { username = "ratelimited", password = "wrong" }), HttpStatusCode.Unauthorized);
        }

        var blocked = await anonymous.PostAsJsonAsync("/api/auth/token", new { username = "RateLimited", password = "right-password-1" });
        await HttpAssert.ProblemAsync(blocked, HttpStatusCode.TooManyRequests);
        Assert.True(blocked.Headers.RetryAfter?.Delta > TimeSpan.Zero);

        // Other users are not affected.
        var other = await anonymous.PostAsJsonAsync("/api/auth/token", new { username = "user", password = ApiFixture.UserPassword });
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task Inactive_or_deleted_users_cannot_log_in_and_their_tokens_stop_working()
    {
        using var inactive = await api.NewUserClientAsync("goes-inactive", password: "password-inactive");
        using var deleted = await api.NewUserClientAsync("goes-deleted", password: "password-deleted");
        Assert.Equal(HttpStatusCode.OK, (await inactive.GetAsync("/api/me")).StatusCode);

        await api.ExecuteAsync("UPDATE users SET is_active = false WHERE username = 'goes-inactive'");
        await api.ExecuteAsync("UPDATE users SET deleted_at = now() WHERE username = 'goes-deleted'");

        await HttpAssert.ProblemAsync(await inactive.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
        await HttpAssert.ProblemAsync(await deleted.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
            new { username = "goes-inactive", password = "password-inactive" }), HttpStatusCode.Unauthorized);
        await HttpAssert.ProblemAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
            new { username = "goes-deleted", password = "password-deleted" }), HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task A_changed_security_stamp_revokes_existing_tokens()
    {
        using var client = await api.NewUserClientAsync("stamped", password: "password-stamped");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/me")).StatusCode);

        await api.ExecuteAsync("UPDATE users SET security_stamp = gen_random_uuid() WHERE username = 'stamped'");

        await HttpAssert.ProblemAsync(await client.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task Roles_are_listed_for_any_signed_in_user()
    {
        using var user = await api.UserAsync();
        var roles = await HttpAssert.ReadAsync<PagedList<RoleResponse>>(await user.GetAsync("/api/roles"));
        Assert.Equal(["Admin", "User"], roles.Items.Select(r => r.Name));
    }
}
