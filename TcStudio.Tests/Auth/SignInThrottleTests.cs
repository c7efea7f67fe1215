using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Auth;

/// <summary>
/// Failed sign-ins, as an attacker and a user would meet them: a burst cannot buy more guesses than the limit, the
/// wait after the limit grows with each failure, a stranger cannot lock the owner of an account out, and per-address
/// limits count the real client behind a trusted proxy (and only behind one). Real sockets from several loopback
/// addresses; the product's default limits (5 failures per username, 20 per address).
/// </summary>
public sealed class SignInThrottleTests(SignInThrottleTests.Fixture api) : IClassFixture<SignInThrottleTests.Fixture>
{
    /// <summary>127.0.0.2 is a trusted proxy by address, 127.0.0.16/29 by network; any other peer is a client.</summary>
    public sealed class Fixture(PostgresServer server) : LoopbackApiFixture(server)
    {
        public const string TrustedProxy = "127.0.0.2";
        public const string ProxyInTrustedNetwork = "127.0.0.17";

        protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("ForwardedHeaders:KnownProxies:0", TrustedProxy),
            new("ForwardedHeaders:KnownNetworks:0", "127.0.0.16/29"),
            new("Auth:LoginRateLimit:CleanupInterval", "00:00:01"),
        ];
    }

    private const string Password = "the-right-password-1";

    private static Task<HttpResponseMessage> SignInAsync(HttpClient client, string username, string password) =>
        client.PostAsJsonAsync("/api/auth/token", new { username, password });

    [Fact]
    public async Task A_burst_of_100_concurrent_wrong_passwords_gets_at_most_the_limit_of_401s()
    {
        (await api.NewUserClientAsync("burst-target", password: Password)).Dispose();
        using var attacker = api.ClientFrom("127.0.0.9");

        var responses = await Task.WhenAll(Enumerable.Range(0, 100)
            .Select(_ => SignInAsync(attacker, "burst-target", "wrong-guess")));

        var unauthorized = responses.Count(r => r.StatusCode == HttpStatusCode.Unauthorized);
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.True(unauthorized <= 5, $"{unauthorized} answers of 401 against a limit of 5 ({refused.Count} of 429)");
        Assert.True(unauthorized + refused.Count == 100, "other answers: " + string.Join(", ", responses
            .Where(r => r.StatusCode is not (HttpStatusCode.Unauthorized or HttpStatusCode.TooManyRequests)).Select(r => (int)r.StatusCode)));
        Assert.All(refused, r => Assert.True(r.Headers.RetryAfter?.Delta > TimeSpan.Zero, "429 without Retry-After"));
        await HttpAssert.ProblemAsync(refused[0], HttpStatusCode.TooManyRequests);
        // Only as many guesses were checked as the limit allows: the rest were refused before their password was.
        Assert.Equal(5, await api.ScalarAsync<int>(
            "SELECT failures FROM login_failures WHERE key = 'username:' || encode(sha256(convert_to('burst-target', 'UTF8')), 'hex')"));
    }

    [Fact]
    public async Task Concurrent_sign_ins_with_the_right_password_queue_and_all_succeed()
    {
        (await api.NewUserClientAsync("busy-signer", password: Password)).Dispose();
        using var client = api.ClientFrom("127.0.0.11");
        // A typo first: this address is not a clean one, so attempts in flight are capped by the limit.
        await HttpAssert.ProblemAsync(await SignInAsync(client, "busy-signer", "typo"), HttpStatusCode.Unauthorized);

        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => SignInAsync(client, "busy-signer", Password)));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
    }

    [Fact]
    public async Task A_stranger_cannot_lock_the_owner_out()
    {
        (await api.NewUserClientAsync("lockout-target", password: Password)).Dispose();
        using var stranger = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: "198.51.100.66");
        for (var i = 0; i < 8; i++) await SignInAsync(stranger, "lockout-target", $"guess-{i}");

        // The stranger is refused now, even with the right password...
        var blocked = await SignInAsync(stranger, "lockout-target", Password);
        await HttpAssert.ProblemAsync(blocked, HttpStatusCode.TooManyRequests);
        Assert.True(blocked.Headers.RetryAfter?.Delta > TimeSpan.Zero);

        // ...but the owner, from an address with no recent failures, signs in.
        using var owner = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: "203.0.113.50");
        await HttpAssert.ReadAsync<TcStudio.Api.Auth.TokenResponse>(await SignInAsync(owner, "lockout-target", Password));
        using var ownerDirect = api.ClientFrom("127.0.0.10");
        await HttpAssert.ReadAsync<TcStudio.Api.Auth.TokenResponse>(await SignInAsync(ownerDirect, "lockout-target", Password));
    }

    [Fact]
    public async Task Each_failure_past_the_limit_makes_the_wait_longer()
    {
        (await api.NewUserClientAsync("backoff-target", password: Password)).Dispose();
        using var attacker = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: "198.51.100.70");
        for (var i = 0; i < 5; i++)
        {
            await HttpAssert.ProblemAsync(await SignInAsync(attacker, "backoff-target", $"guess-{i}"), HttpStatusCode.Unauthorized);
        }

        var waits = new List<TimeSpan>();
        for (var round = 0; round < 3; round++)
        {
            var refused = await SignInAsync(attacker, "backoff-target", "another-guess");
            await HttpAssert.ProblemAsync(refused, HttpStatusCode.TooManyRequests);
            waits.Add(refused.Headers.RetryAfter!.Delta!.Value);
            // One more wrong password for the username, from an address that has none yet (so it is checked).
            using var elsewhere = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: $"198.51.100.{71 + round}");
            await HttpAssert.ProblemAsync(await SignInAsync(elsewhere, "backoff-target", "guess-elsewhere"), HttpStatusCode.Unauthorized);
        }

        Assert.True(waits[1] > waits[0] && waits[2] > waits[1], $"waits: {string.Join(", ", waits)}");
        Assert.True(waits[2] >= waits[0] * 3, $"waits: {string.Join(", ", waits)} (each failure should double the wait)");
    }

    [Fact]
    public async Task Unknown_usernames_are_throttled_exactly_like_known_ones()
    {
        (await api.NewUserClientAsync("known-user", password: Password)).Dispose();
        async Task<List<int>> SequenceAsync(string username, string address)
        {
            using var client = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: address);
            var statuses = new List<int>();
            for (var i = 0; i < 7; i++) statuses.Add((int)(await SignInAsync(client, username, $"guess-{i}")).StatusCode);
            return statuses;
        }

        var known = await SequenceAsync("known-user", "198.51.100.90");
        var unknown = await SequenceAsync("nobody-by-this-name", "198.51.100.91");

        Assert.Equal([401, 401, 401, 401, 401, 429, 429], known);
        Assert.Equal(known, unknown);
    }

    [Fact]
    public async Task Per_address_limits_count_the_client_behind_a_trusted_proxy_and_ignore_headers_from_anyone_else()
    {
        (await api.NewUserClientAsync("address-target", password: Password)).Dispose();

        // One client behind the trusted proxy spends its 20 failures (on 20 usernames, so no username is locked).
        using var noisy = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: "198.51.100.80");
        for (var i = 0; i < 20; i++)
        {
            await HttpAssert.ProblemAsync(await SignInAsync(noisy, $"sprayed-{i}", "guess"), HttpStatusCode.Unauthorized);
        }
        await HttpAssert.ProblemAsync(await SignInAsync(noisy, "address-target", Password), HttpStatusCode.TooManyRequests);

        // Its neighbour behind the same proxy is another client, and signs in.
        using var neighbour = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: "198.51.100.81");
        await HttpAssert.ReadAsync<TcStudio.Api.Auth.TokenResponse>(await SignInAsync(neighbour, "address-target", Password));

        // A proxy in the trusted network is believed too, and a forged entry before the real one changes nothing.
        using var sameClientOtherProxy = api.ClientFrom(Fixture.ProxyInTrustedNetwork, forwardedFor: "203.0.113.99, 198.51.100.80");
        await HttpAssert.ProblemAsync(await SignInAsync(sameClientOtherProxy, "address-target", Password), HttpStatusCode.TooManyRequests);

        // A peer that is no configured proxy cannot pick its address with X-Forwarded-For: its own address counts.
        for (var i = 0; i < 20; i++)
        {
            using var forger = api.ClientFrom("127.0.0.3", forwardedFor: $"198.51.100.{100 + i}");
            await HttpAssert.ProblemAsync(await SignInAsync(forger, $"forged-{i}", "guess"), HttpStatusCode.Unauthorized);
        }
        using var forgerWithFreshHeader = api.ClientFrom("127.0.0.3", forwardedFor: "198.51.100.200");
        await HttpAssert.ProblemAsync(await SignInAsync(forgerWithFreshHeader, "address-target", Password), HttpStatusCode.TooManyRequests);
    }

    [Fact]
    public async Task Counts_are_kept_in_the_database_and_old_ones_are_deleted()
    {
        using var client = api.ClientFrom(Fixture.TrustedProxy, forwardedFor: "198.51.100.150");
        await HttpAssert.ProblemAsync(await SignInAsync(client, "cleanup-target", "guess"), HttpStatusCode.Unauthorized);
        Assert.Equal(1L, await api.ScalarAsync<long>("SELECT count(*) FROM login_failures WHERE key = 'address:198.51.100.150'"));

        // Time passes (the rows' expiry is moved into the past): the periodic cleanup deletes them.
        await api.ExecuteAsync("UPDATE login_failures SET expires_at = now() - interval '1 second' WHERE key = 'address:198.51.100.150'");
        var deadline = Stopwatch.StartNew();
        while (await api.ScalarAsync<long>("SELECT count(*) FROM login_failures WHERE key = 'address:198.51.100.150'") > 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "expired rows were not cleaned up");
            await Task.Delay(200);
        }
    }
}
