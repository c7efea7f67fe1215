using Microsoft.Extensions.Logging;
using Npgsql;
using TcStudio.DatabaseTelemetry;

namespace TcStudio.SystemDatabase;

/// <summary>
/// A session-level PostgreSQL advisory lock taken around migrate, seed and reset, so two workers (or a worker and an
/// API with Database:MigrateOnStartup) started together never both migrate or both seed: the second waits, then
/// finds nothing left to do. The lock lives on its own connection and is released when it closes, even if the
/// process dies.
/// </summary>
public sealed class MigrationLock : IAsyncDisposable
{
    /// <summary>"tcstudio" in ASCII: the key every TC Studio process uses for schema changes.</summary>
    public const long Key = 0x7463_7374_7564_696F;

    private readonly NpgsqlConnection _connection;

    private MigrationLock(NpgsqlConnection connection) => _connection = connection;

    public static async Task<MigrationLock> AcquireAsync(
        NpgsqlConnectionStringBuilder target, ILogger logger, CancellationToken cancellationToken)
    {
        // A dedicated, unpooled connection: returning a pooled one would not end the session, nor the lock.
        var lockConnectionString = new NpgsqlConnectionStringBuilder(target.ConnectionString)
        {
            Pooling = false,
            ApplicationName = "tcstudio-migration-lock",
        };
        await EnsureDatabaseExistsAsync(lockConnectionString, logger, cancellationToken);

        var connection = NpgsqlDataSources.CreateUnpooledConnection(NpgsqlDataSources.MigrationLock, lockConnectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            // Polls rather than blocking in pg_advisory_lock: a session blocked in a statement holds a snapshot, and
            // CREATE INDEX CONCURRENTLY in the migrating session would wait for that snapshot to go (a deadlock).
            var loggedWait = false;
            while (!await TryLockAsync(connection, cancellationToken))
            {
                if (!loggedWait)
                {
                    logger.LogInformation("Another process is migrating or seeding {Database}; waiting for it to finish", target.Database);
                    loggedWait = true;
                }
                await Task.Delay(PollInterval, cancellationToken);
            }
            return new MigrationLock(connection);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await _connection.DisposeAsync();

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    private static async Task<bool> TryLockAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection);
        tryLock.Parameters.AddWithValue("key", Key);
        return (bool)(await tryLock.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Creates the database when it does not exist yet (a fresh server), through the server's maintenance database.
    /// Two processes racing here are fine: the loser sees 42P04 and moves on.
    /// </summary>
    private static async Task EnsureDatabaseExistsAsync(
        NpgsqlConnectionStringBuilder target, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            await using var probe = NpgsqlDataSources.CreateUnpooledConnection(NpgsqlDataSources.MigrationLock, target);
            await probe.OpenAsync(cancellationToken);
            return;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName)
        {
            // Falls through to create it.
        }

        var maintenance = new NpgsqlConnectionStringBuilder(target.ConnectionString) { Database = "postgres" };
        await using var connection = NpgsqlDataSources.CreateUnpooledConnection(NpgsqlDataSources.MigrationLock, maintenance);
        await connection.OpenAsync(cancellationToken);
        var quotedName = "\"" + target.Database!.Replace("\"", "\"\"") + "\"";
        try
        {
            await using var create = new NpgsqlCommand($"CREATE DATABASE {quotedName}", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
            logger.LogInformation("Created database {Database}", target.Database);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.DuplicateDatabase or PostgresErrorCodes.UniqueViolation)
        {
            // Another process created it first.
        }
    }
}
