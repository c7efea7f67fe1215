using System.CommandLine;
using System.Globalization;

namespace TcStudio.MigrationWorker;

/// <summary>
/// <c>backup [--workspaces] [--base] [--schedule CRON]</c>, <c>backup verify FILE</c>,
/// <c>restore --from FILE [--into DB] [--force]</c>, <c>restore --pitr --target-time T [--into DIR]</c> and
/// <c>restore stop DIR</c> (README, "Backups" and "Recovery drill").
/// </summary>
public static class BackupCommandLine
{
    public static IEnumerable<Command> Create() => [CreateBackupCommand(), CreateRestoreCommand()];

    private static Command CreateBackupCommand()
    {
        var workspaces = new Option<bool>("--workspaces") { Description = "Also back up every workspace database (PostgreSQL: pg_dump; SQL "
            + "Server: BACKUP DATABASE)." };
        var baseBackup = new Option<bool>("--base") { Description = "A physical base backup of the whole server (pg_basebackup, checked with "
            + "pg_verifybackup) for point-in-time recovery." };
        var schedule = new Option<string?>("--schedule") { Description = "Run as a long-lived scheduler: a backup at each occurrence of this cron "
            + "expression (5 fields, or 6 with seconds; UTC)." };
        var backup = new Command("backup",
            "Back up the system database (pg_dump, custom format) with a manifest of row counts and checksums; apply retention.")
        {
            workspaces, baseBackup, schedule,
        };
        backup.Validators.Add(result =>
        {
            if (result.GetValue(baseBackup) && result.GetValue(workspaces))
            {
                result.AddError("--base backs up the whole server (every database in it); it does not combine with --workspaces.");
            }
        });
        backup.SetAction((parse, ct) =>
        {
            var cron = parse.GetValue(schedule);
            var physical = parse.GetValue(baseBackup);
            var alsoWorkspaces = parse.GetValue(workspaces);
            return WorkerHost.RunAsync<BackupVerbs>(cron is not null ? "backup --schedule" : physical ? "backup --base" : "backup",
                (verbs, ct2) => cron is not null ? verbs.ScheduleAsync(cron, physical, alsoWorkspaces, ct2)
                    : physical ? verbs.BaseBackupAsync(ct2)
                    : verbs.BackupAsync(alsoWorkspaces, ct2), ct);
        });

        var file = new Argument<string>("file") { Description = "The backup file (its manifest is beside it)." };
        var verify = new Command("verify",
            "Check a backup: SHA-256 against its manifest, restore into a scratch database, compare row counts and checksums, drop it.") { file };
        verify.SetAction((parse, ct) => WorkerHost.RunAsync<BackupVerbs>("backup verify",
            (verbs, ct2) => verbs.VerifyAsync(parse.GetValue(file)!, ct2), ct));
        backup.Subcommands.Add(verify);
        return backup;
    }

    private static Command CreateRestoreCommand()
    {
        var from = new Option<string?>("--from") { Description = "The backup file to restore (logical backups)." };
        var into = new Option<string?>("--into") { Description = "Logical: the new database's name (default <database>_restored_<time>). --pitr: "
            + "the new data directory." };
        var force = new Option<bool>("--force") { Description = "Development only: replace an existing database (the live one included) with the "
            + "checked, restored copy." };
        var pitr = new Option<bool>("--pitr") { Description = "Point-in-time recovery from the latest base backup before --target-time "
            + "plus the archived WAL." };
        var targetTime = new Option<string?>("--target-time") { Description = "With --pitr: the moment to recover to (ISO 8601; without "
            + "an offset it is UTC)." };
        var restore = new Command("restore",
            "Restore a backup into a new database and check it against its manifest; or, with --pitr, recover a server to a point in time.")
        {
            from, into, force, pitr, targetTime,
        };
        restore.Validators.Add(result =>
        {
            var isPitr = result.GetValue(pitr);
            if (isPitr && result.GetValue(from) is not null)
            {
                result.AddError("--pitr recovers from the base backups and the WAL archive; it takes no --from.");
            }
            if (isPitr && result.GetValue(targetTime) is null) result.AddError("--pitr needs --target-time.");
            if (isPitr && result.GetValue(targetTime) is { } t && ParseTime(t) is null)
            {
                result.AddError($"--target-time '{t}' is not a time (use ISO 8601, e.g. 2026-11-29T14:02:00Z).");
            }
            if (!isPitr && result.GetValue(targetTime) is not null) result.AddError("--target-time goes with --pitr.");
            if (!isPitr && result.GetValue(from) is null) result.AddError("restore needs --from FILE (or --pitr --target-time T).");
        });
        restore.SetAction((parse, ct) => parse.GetValue(pitr)
            ? WorkerHost.RunAsync<BackupVerbs>("restore --pitr", (verbs, ct2) =>
                verbs.PointInTimeAsync(ParseTime(parse.GetValue(targetTime)!)!.Value, parse.GetValue(into), ct2), ct, needsDatabase: false)
            : WorkerHost.RunAsync<BackupVerbs>("restore", (verbs, ct2) =>
                verbs.RestoreAsync(parse.GetValue(from)!, parse.GetValue(into), parse.GetValue(force), ct2), ct));

        var directory = new Argument<string>("directory") { Description = "The data directory a point-in-time recovery made." };
        var stop = new Command("stop", "Stop the server a point-in-time recovery started (its data directory stays).") { directory };
        stop.SetAction((parse, ct) => WorkerHost.RunAsync<BackupVerbs>("restore stop", (verbs, ct2) =>
            verbs.StopRecoveredAsync(parse.GetValue(directory)!, ct2), ct, needsDatabase: false));
        restore.Subcommands.Add(stop);
        return restore;
    }

    /// <summary>ISO 8601; a time without an offset is taken as UTC.</summary>
    public static DateTimeOffset? ParseTime(string text) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time)
            ? time
            : null;
}
