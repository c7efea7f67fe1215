using System.Net;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// The general rate limit: per signed-in user and per client address, 429 with Retry-After and a problem body.
/// Low limits of this class's own (3 requests a second per user, 40 per address), real sockets from several loopback
/// addresses; bursts are sent concurrently and far above the limits, so the outcome does not depend on timing.
/// </summary>
public sealed class RateLimitTests(RateLimitTests.Fixture api) : IClassFixture<RateLimitTests.Fixture>
{
    public sealed class Fixture(PostgresServer server) : LoopbackApiFixture(server)
    {
        protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("RateLimit:PermitsPerSecondPerUser", "3"),
            new("RateLimit:PermitsPerSecondPerAddress", "40"),
        ];
    }

    private static async Task<HttpResponseMessage[]> BurstAsync(HttpClient client, string path, int count) =>
        await Task.WhenAll(Enumerable.Range(0, count).Select(_ => client.GetAsync(path)));

    private async Task<HttpClient> SignedInClientAsync(string username, string peer)
    {
        var client = api.ClientFrom(peer);
        (await api.NewUserClientAsync(username, password: "a-password-123")).Dispose();
        return await ApiFixture.SignInAsync(client, username, "a-password-123");
    }

    [Fact]
    public async Task A_user_over_their_limit_gets_429_with_Retry_After_and_a_problem_while_another_user_is_served()
    {
        using var busy = await SignedInClientAsync("busy-user", "127.0.0.21");
        using var calm = await SignedInClientAsync("calm-user", "127.0.0.22");

        var burst = await BurstAsync(busy, "/api/me", 30);

        var refused = burst.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(refused);
        Assert.All(burst, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        var problem = await HttpAssert.ProblemAsync(refused[0], HttpStatusCode.TooManyRequests);
        Assert.Contains("requests", problem.GetProperty("title").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.True(refused[0].Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After: {refused[0].Headers.RetryAfter}");

        Assert.Equal(HttpStatusCode.OK, (await calm.GetAsync("/api/me")).StatusCode);
    }

    [Fact]
    public async Task A_user_is_limited_across_addresses()
    {
        using var first = await SignedInClientAsync("roaming-user", "127.0.0.23");
        using var second = api.ClientFrom("127.0.0.24");
        second.DefaultRequestHeaders.Authorization = first.DefaultRequestHeaders.Authorization;

        var burst = await Task.WhenAll(BurstAsync(first, "/api/me", 20), BurstAsync(second, "/api/me", 20));

        // 40 requests in all: under the per-address limit at each address, far over the user's.
        Assert.Contains(burst.SelectMany(b => b), r => r.StatusCode == HttpStatusCode.TooManyRequests);
    }

    [Fact]
    public async Task An_address_over_its_limit_gets_429_while_other_addresses_are_served_and_health_is_never_limited()
    {
        using var flooding = api.ClientFrom("127.0.0.25");
        using var other = api.ClientFrom("127.0.0.26");

        var burst = await BurstAsync(flooding, "/api/roles", 300);

        var refused = burst.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(refused);
        await HttpAssert.ProblemAsync(refused[0], HttpStatusCode.TooManyRequests);
        Assert.True(refused[0].Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
        // Anonymous: the rest were turned away by authorization, not served.
        Assert.All(burst.Except(refused), r => Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode));

        Assert.Equal(HttpStatusCode.Unauthorized, (await other.GetAsync("/api/roles")).StatusCode);
        using var probe = api.ClientFrom("127.0.0.27");
        var health = await BurstAsync(probe, "/alive", 300);
        Assert.All(health, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
    }
}

/// <summary>RateLimit:Enabled=false turns the general limit off.</summary>
public sealed class RateLimitSwitchTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task With_the_limit_off_nothing_is_refused()
    {
        await using var factory = ApiHost.Over(database.ConnectionString,
            ("RateLimit:Enabled", "false"), ("RateLimit:PermitsPerSecondPerAddress", "1"), ("RateLimit:PermitsPerSecondPerUser", "1"));
        using var client = factory.CreateClient();

        var burst = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => client.GetAsync("/api/roles")));

        Assert.All(burst, r => Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode));
    }

    [Fact]
    public async Task With_the_limit_on_the_in_memory_client_is_limited_too()
    {
        await using var factory = ApiHost.Over(database.ConnectionString, ("RateLimit:PermitsPerSecondPerAddress", "2"));
        using var client = factory.CreateClient();

        var burst = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => client.GetAsync("/api/roles")));

        Assert.Contains(burst, r => r.StatusCode == HttpStatusCode.TooManyRequests);
    }
}
