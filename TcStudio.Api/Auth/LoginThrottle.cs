using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace TcStudio.Api.Auth;

/// <summary>
/// Counts failed logins per username and per client address in a fixed window; once either is over its limit,
/// further attempts are refused (429 with Retry-After) until the window ends, whatever the password. A success
/// clears the username's count. In memory, per instance: enough to make online guessing slow.
/// </summary>
public sealed class LoginThrottle(IOptions<AuthOptions> options, TimeProvider clock)
{
    private sealed class Window
    {
        public DateTimeOffset StartedAt;
        public int Failures;
    }

    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    /// <summary>When blocked, how long until the caller may try again.</summary>
    public TimeSpan? RetryAfter(string username, string? address)
    {
        var limits = options.Value.LoginRateLimit;
        var byUser = Remaining(UserKey(username), limits.PermitLimitPerUsername);
        var byAddress = address is null ? null : Remaining(AddressKey(address), limits.PermitLimitPerAddress);
        if (byUser is null) return byAddress;
        if (byAddress is null) return byUser;
        return byUser > byAddress ? byUser : byAddress;
    }

    public void RecordFailure(string username, string? address)
    {
        Increment(UserKey(username));
        if (address is not null) Increment(AddressKey(address));
        if (_windows.Count > 100_000) Prune();
    }

    public void RecordSuccess(string username) => _windows.TryRemove(UserKey(username), out _);

    private TimeSpan? Remaining(string key, int limit)
    {
        if (!_windows.TryGetValue(key, out var window)) return null;
        lock (window)
        {
            var left = window.StartedAt + options.Value.LoginRateLimit.Window - clock.GetUtcNow();
            return window.Failures >= limit && left > TimeSpan.Zero ? left : null;
        }
    }

    private void Increment(string key)
    {
        var window = _windows.GetOrAdd(key, _ => new Window { StartedAt = clock.GetUtcNow() });
        lock (window)
        {
            var now = clock.GetUtcNow();
            if (now - window.StartedAt >= options.Value.LoginRateLimit.Window)
            {
                window.StartedAt = now;
                window.Failures = 0;
            }
            window.Failures++;
        }
    }

    private void Prune()
    {
        var cutoff = clock.GetUtcNow() - options.Value.LoginRateLimit.Window;
        foreach (var (key, window) in _windows)
        {
            if (window.StartedAt < cutoff) _windows.TryRemove(key, out _);
        }
    }

    private static string UserKey(string username) => "user:" + username.ToLowerInvariant();
    private static string AddressKey(string address) => "addr:" + address;
}
