using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql;

namespace TcStudio.SystemDatabase;

/// <summary>One migration and whether the database has it.</summary>
public sealed record MigrationState(string Id, bool Applied, bool KnownToCode = true);

/// <summary>What one step of migrate or revert did, reported as it happens.</summary>
public sealed record MigrationStep(string Id, TimeSpan Duration);

/// <summary>
/// Applies, reverts, lists and scripts the system database's EF migrations, one migration at a time so progress can
/// be shown. Callers that change the schema hold <see cref="MigrationLock"/>.
/// </summary>
public sealed class SystemDatabaseMigrator(TcStudioDbContext db)
{
    public static readonly ActivitySource ActivitySource = new("TcStudio.Migrations");

    /// <summary>
    /// The client-side limit of one migration statement. Database:CommandTimeout bounds requests (30 s); a
    /// migration that copies a big table (PartitionedActivities on millions of activities) may take minutes, and
    /// cancelling it half-way only means running it again.
    /// </summary>
    public static readonly TimeSpan MigrationCommandTimeout = TimeSpan.FromHours(1);

    public IReadOnlyList<string> AllMigrations => db.Database.GetMigrations().ToList();

    public async Task<IReadOnlyList<MigrationState>> GetStatusAsync(CancellationToken cancellationToken = default)
    {
        var applied = (await db.Database.GetAppliedMigrationsAsync(cancellationToken)).ToList();
        var all = AllMigrations;
        var states = all.Select(id => new MigrationState(id, applied.Contains(id))).ToList();
        // Migrations the database has but this build does not: a newer build migrated it.
        states.AddRange(applied.Except(all).Select(id => new MigrationState(id, true, KnownToCode: false)));
        return states;
    }

    public async Task<IReadOnlyList<string>> GetPendingAsync(CancellationToken cancellationToken = default) =>
        (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();

    /// <summary>Applies pending migrations in order, up to and including <paramref name="target"/> when given.</summary>
    public async Task<IReadOnlyList<MigrationStep>> MigrateAsync(
        string? target, Action<MigrationStep>? progress = null, CancellationToken cancellationToken = default)
    {
        var all = AllMigrations;
        var pending = await GetPendingAsync(cancellationToken);
        var targetId = target is null ? null : Resolve(target, all);
        var toApply = targetId is null
            ? pending
            : pending.Where(id => string.CompareOrdinal(id, targetId) <= 0).ToList();

        var migrator = db.GetService<IMigrator>();
        db.Database.SetCommandTimeout(MigrationCommandTimeout);
        var steps = new List<MigrationStep>();
        foreach (var id in toApply)
        {
            using var activity = ActivitySource.StartActivity("migrate " + id);
            var stopwatch = Stopwatch.StartNew();
            await migrator.MigrateAsync(id, cancellationToken);
            var step = new MigrationStep(id, stopwatch.Elapsed);
            steps.Add(step);
            progress?.Invoke(step);
        }
        return steps;
    }

    /// <summary>
    /// Reverts the last applied migration, or with <paramref name="target"/> reverts until it is the last applied
    /// one ("0" reverts everything). Each Down runs, newest first.
    /// </summary>
    public async Task<IReadOnlyList<MigrationStep>> RevertAsync(
        string? target, Action<MigrationStep>? progress = null, CancellationToken cancellationToken = default)
    {
        var all = AllMigrations;
        var applied = (await db.Database.GetAppliedMigrationsAsync(cancellationToken)).ToList();
        var unknown = applied.Except(all).ToList();
        if (unknown.Count > 0)
        {
            throw new MigrationCommandException(
                $"The database has migrations this build does not know ({string.Join(", ", unknown)}); revert them with the "
                    + "build that applied them.");
        }
        if (applied.Count == 0) return [];

        string targetId;
        if (target is null)
        {
            targetId = applied.Count > 1 ? applied[^2] : Migration.InitialDatabase;
        }
        else if (target == Migration.InitialDatabase)
        {
            targetId = Migration.InitialDatabase;
        }
        else
        {
            targetId = Resolve(target, all);
            if (!applied.Contains(targetId))
            {
                throw new MigrationCommandException($"Migration '{target}' is not applied; nothing to revert to.");
            }
        }

        var migrator = db.GetService<IMigrator>();
        db.Database.SetCommandTimeout(MigrationCommandTimeout);
        var steps = new List<MigrationStep>();
        for (var i = applied.Count - 1; i >= 0 && applied[i] != targetId; i--)
        {
            var previous = i > 0 ? applied[i - 1] : Migration.InitialDatabase;
            using var activity = ActivitySource.StartActivity("revert " + applied[i]);
            var stopwatch = Stopwatch.StartNew();
            await migrator.MigrateAsync(previous, cancellationToken);
            var step = new MigrationStep(applied[i], stopwatch.Elapsed);
            steps.Add(step);
            progress?.Invoke(step);
        }

        // Reverting everything leaves nothing behind, not even EF's (now empty) history table.
        if (targetId == Migration.InitialDatabase)
        {
            await db.Database.ExecuteSqlRawAsync(
                $"DROP TABLE IF EXISTS \"{TcStudioDbContext.MigrationsHistoryTable}\"", cancellationToken);
        }
        return steps;
    }

    /// <summary>
    /// The SQL that <c>migrate</c> would run against this database now, or, idempotent, the whole history as a
    /// script that can run against a database in any state (that one needs no database).
    /// </summary>
    public async Task<string> ScriptAsync(bool idempotent, CancellationToken cancellationToken = default)
    {
        var migrator = db.GetService<IMigrator>();
        if (idempotent)
        {
            return migrator.GenerateScript(options: MigrationsSqlGenerationOptions.Idempotent);
        }
        var applied = (await db.Database.GetAppliedMigrationsAsync(cancellationToken)).ToList();
        var pending = await GetPendingAsync(cancellationToken);
        if (pending.Count == 0) return "-- The database is up to date: migrate has nothing to run.\n";
        return migrator.GenerateScript(fromMigration: applied.LastOrDefault() ?? Migration.InitialDatabase);
    }

    /// <summary>
    /// Drops every object of the system database's public schema (tables, types, functions, the history table)
    /// and recreates the empty schema. The caller migrates and seeds afterwards.
    /// </summary>
    public async Task DropEverythingAsync(CancellationToken cancellationToken = default)
    {
        await db.Database.ExecuteSqlRawAsync(
            """
            DROP SCHEMA IF EXISTS public CASCADE;
            CREATE SCHEMA public AUTHORIZATION pg_database_owner;
            GRANT USAGE ON SCHEMA public TO PUBLIC;
            """, cancellationToken);
        // Cached plans and type metadata refer to the dropped objects.
        NpgsqlConnection.ClearAllPools();
    }

    /// <summary>Accepts a full id (20251123000000_Initial) or just the name (Initial).</summary>
    private static string Resolve(string target, IReadOnlyList<string> all) =>
        all.FirstOrDefault(id => id == target)
        ?? all.FirstOrDefault(id => id.EndsWith("_" + target, StringComparison.OrdinalIgnoreCase))
        ?? throw new MigrationCommandException(
            $"Unknown migration '{target}'. Known: {(all.Count == 0 ? "none" : string.Join(", ", all))}.");
}

/// <summary>A migrate / revert request that cannot be carried out as asked; the message says why.</summary>
public sealed class MigrationCommandException(string message) : Exception(message);
