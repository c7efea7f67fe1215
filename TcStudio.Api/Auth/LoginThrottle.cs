using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Npgsql;

namespace TcStudio.Api.Auth;

/// <summary>
/// Limits failed sign-ins per username and per client address, in PostgreSQL (table <c>login_failures</c>), so every
/// API instance shares the counts. Before its password is checked, an attempt is checked and recorded in one statement
/// under row locks (<c>login_attempt_begin</c>, see the LoginThrottle migration) and counts as pending until it reports
/// its outcome (<c>login_attempt_end</c>): no more attempts are let through at once than the failures the limit still
/// allows, so a burst of N concurrent guesses gets at most the limit checked, whatever N. Attempts over that wait a
/// moment (polling, never holding a connection) for the ones in flight, so concurrent sign-ins of one user queue
/// rather than fail.
/// <list type="bullet">
/// <item>Per username: past <c>PermitLimitPerUsername</c> failures the username is locked for <c>BackoffBase</c>, doubled
/// with each further failure up to <c>BackoffMax</c>. The lock applies to addresses with failures (or attempts) of their
/// own: from an address without any the right password still works, so a stranger cannot lock the owner out.</item>
/// <item>Per client address (<see cref="ClientAddress"/>): past <c>PermitLimitPerAddress</c> failures it is refused for
/// <c>Window</c>.</item>
/// </list>
/// A count is forgotten <c>Window</c> after its last failure or the end of its lock; a success clears the username's
/// failures. <see cref="LoginFailureCleanup"/> deletes forgotten rows.
/// </summary>
public sealed class LoginThrottle(NpgsqlDataSource dataSource, IOptions<AuthOptions> options)
{
    private readonly KeyedGates _gates = new();

    /// <summary>An attempt that never reports back (its process died) stops counting as pending after this.</summary>
    public static readonly TimeSpan PendingTimeout = TimeSpan.FromMinutes(1);

    /// <summary>How long an attempt waits for the ones in flight before it is answered 429 (Retry-After: 1).</summary>
    public static readonly TimeSpan QueueTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Checks and records an attempt: null to go ahead (the caller must then call <see cref="EndAttemptAsync"/>, whatever
    /// happens), else how long the caller must wait.
    /// </summary>
    public async Task<TimeSpan?> BeginAttemptAsync(string username, string clientAddress, CancellationToken cancellationToken)
    {
        var limits = options.Value.LoginRateLimit;
        var usernameKey = UsernameKey(username);
        var addressKey = AddressKey(clientAddress);
        using var queueTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        queueTimeout.CancelAfter(QueueTimeout);
        try
        {
            // In this process, one attempt per username and per address asks PostgreSQL at a time; the others wait
            // here, in memory, so a burst costs one query per attempt and never a crowd of pollers for the pool.
            // Gates are entered in key order, like the rows they stand for.
            var (first, second) = string.CompareOrdinal(usernameKey, addressKey) < 0 ? (usernameKey, addressKey) : (addressKey, usernameKey);
            using var firstGate = await _gates.EnterAsync(first, queueTimeout.Token);
            using var secondGate = await _gates.EnterAsync(second, queueTimeout.Token);

            var pause = TimeSpan.FromMilliseconds(20);
            while (true)
            {
                await using (var command = dataSource.CreateCommand("SELECT login_attempt_begin($1, $2, $3, $4, $5, $6)"))
                {
                    command.Parameters.Add(new NpgsqlParameter { Value = usernameKey });
                    command.Parameters.Add(new NpgsqlParameter { Value = addressKey });
                    command.Parameters.Add(new NpgsqlParameter { Value = limits.PermitLimitPerUsername });
                    command.Parameters.Add(new NpgsqlParameter { Value = limits.PermitLimitPerAddress });
                    command.Parameters.Add(new NpgsqlParameter { Value = limits.Window });
                    command.Parameters.Add(new NpgsqlParameter { Value = PendingTimeout });
                    // Not cancelled halfway: a "go" that the caller never heard of would stay pending for a minute.
                    var answer = await command.ExecuteScalarAsync(CancellationToken.None);
                    if (answer is not TimeSpan wait) return null;
                    if (wait > TimeSpan.Zero) return wait;
                }
                // Busy: attempts in flight (here or in another instance) could still reach a limit, or hold the rows.
                await Task.Delay(pause + TimeSpan.FromMilliseconds(Random.Shared.Next(0, (int)pause.TotalMilliseconds)), queueTimeout.Token);
                pause = TimeSpan.FromMilliseconds(Math.Min(pause.TotalMilliseconds * 2, 250));
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return TimeSpan.FromSeconds(1);
        }
    }

    /// <summary>
    /// Reports an attempt's outcome: a failure is counted (and may lock the username or the address), a success clears
    /// the username's failures. Called even when the request was aborted: an abandoned attempt counts as a failure.
    /// </summary>
    public async Task EndAttemptAsync(string username, string clientAddress, bool succeeded)
    {
        var limits = options.Value.LoginRateLimit;
        await using var command = dataSource.CreateCommand("SELECT login_attempt_end($1, $2, $3, $4, $5, $6, $7, $8)");
        command.Parameters.Add(new NpgsqlParameter { Value = UsernameKey(username) });
        command.Parameters.Add(new NpgsqlParameter { Value = AddressKey(clientAddress) });
        command.Parameters.Add(new NpgsqlParameter { Value = succeeded });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.PermitLimitPerUsername });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.PermitLimitPerAddress });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.Window });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.BackoffBase });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.BackoffMax });
        await command.ExecuteNonQueryAsync(CancellationToken.None);
    }

    /// <summary>
    /// Deletes the counts that have been forgotten, in batches; returns how many. Rows an attempt holds are skipped
    /// (the next round gets them), so the cleanup never waits for, nor deadlocks with, a sign-in.
    /// </summary>
    public async Task<int> DeleteExpiredAsync(CancellationToken cancellationToken)
    {
        const int batch = 10_000;
        var total = 0;
        int deleted;
        do
        {
            await using var command = dataSource.CreateCommand("""
                DELETE FROM login_failures
                WHERE key IN (SELECT key FROM login_failures WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)
                """);
            command.Parameters.Add(new NpgsqlParameter { Value = batch });
            deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            total += deleted;
        } while (deleted == batch);
        return total;
    }

    /// <summary>A digest, not the text: people type passwords into the username field.</summary>
    public static string UsernameKey(string username) =>
        LoginFailure.UsernamePrefix + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(username.ToLowerInvariant())));

    public static string AddressKey(string clientAddress) => LoginFailure.AddressPrefix + clientAddress;
}

/// <summary>One holder at a time per key, in this process; a key's gate exists while someone holds or waits for it.</summary>
internal sealed class KeyedGates
{
    private sealed class Gate
    {
        public readonly SemaphoreSlim Semaphore = new(1, 1);
        public int Users;
    }

    private readonly Dictionary<string, Gate> _gates = new(StringComparer.Ordinal);

    public async Task<IDisposable> EnterAsync(string key, CancellationToken cancellationToken)
    {
        Gate gate;
        lock (_gates)
        {
            if (!_gates.TryGetValue(key, out gate!)) _gates[key] = gate = new Gate();
            gate.Users++;
        }
        try
        {
            await gate.Semaphore.WaitAsync(cancellationToken);
        }
        catch
        {
            Leave(key, gate);
            throw;
        }
        return new Held(this, key, gate);
    }

    private void Leave(string key, Gate gate)
    {
        lock (_gates)
        {
            if (--gate.Users == 0) _gates.Remove(key);
        }
    }

    private sealed class Held(KeyedGates gates, string key, Gate gate) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            gate.Semaphore.Release();
            gates.Leave(key, gate);
        }
    }
}

/// <summary>Deletes forgotten sign-in failure counts every <c>Auth:LoginRateLimit:CleanupInterval</c>.</summary>
public sealed partial class LoginFailureCleanup(LoginThrottle throttle, IOptions<AuthOptions> options, ILogger<LoginFailureCleanup> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.LoginRateLimit.CleanupInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                var deleted = await throttle.DeleteExpiredAsync(stoppingToken);
                if (deleted > 0) LogDeleted(logger, deleted);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException && !stoppingToken.IsCancellationRequested)
            {
                // The database is down or not migrated yet: the next round tries again.
                LogFailed(logger, e.Message);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Deleted {Count} expired sign-in failure counts")]
    private static partial void LogDeleted(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not delete expired sign-in failure counts: {Reason}")]
    private static partial void LogFailed(ILogger logger, string reason);
}
