using TcStudio.MigrationWorker.Backups;

namespace TcStudio.Tests.Backups;

/// <summary>
/// Retention keeps exactly what Backup:KeepLast and Backup:KeepDays say, per database, and only after a good
/// backup; a failed or refused backup leaves every existing backup as it was and no partial file behind.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // file modes of the fake tools
public sealed class BackupRetentionTests(BackupFixture database) : IClassFixture<BackupFixture>
{
    private static readonly DateTimeOffset Now = new(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Selection_keeps_the_newest_count_within_the_age_and_always_the_newest()
    {
        var ages = new[] { 0, 1, 2, 3, 20, 40 };
        var backups = ages.Select(days => (Item: days, At: Now.AddDays(-days))).Reverse().ToList();

        Assert.Equal([3, 20, 40], BackupRetention.SelectForRemoval(backups, Now, keepLast: 3, keepDays: 0).Order());
        Assert.Equal([20, 40], BackupRetention.SelectForRemoval(backups, Now, keepLast: 0, keepDays: 10).Order());
        Assert.Equal([2, 3, 20, 40], BackupRetention.SelectForRemoval(backups, Now, keepLast: 2, keepDays: 10).Order());
        Assert.Empty(BackupRetention.SelectForRemoval(backups, Now, keepLast: 0, keepDays: 0));
        // The newest is kept even when it is older than KeepDays (the only good backup there is).
        Assert.Equal([40], BackupRetention.SelectForRemoval([(20, Now.AddDays(-20)), (40, Now.AddDays(-40))], Now, keepLast: 0, keepDays: 10));
    }

    [Fact]
    public async Task Retention_after_a_good_backup_removes_exactly_what_the_settings_say_and_nothing_of_other_databases()
    {
        using var directory = BackupFixture.NewDirectory("retention");
        var (first, manifest, _) = await database.BackupAsync(directory.Path);
        // Older backups of the same database (copies of the first with older times), and one of another database.
        foreach (var days in new[] { 1, 2, 3, 20, 40 })
        {
            Fabricate(first, manifest, $"{database.DatabaseName}-old{days:D2}d.dump", days, manifest.Database);
        }
        Fabricate(first, manifest, "other_db-old40d.dump", 40, "other_db");

        var environment = database.WorkerEnvironment(directory.Path);
        environment["Backup__KeepLast"] = "3";
        environment["Backup__KeepDays"] = "10";
        var second = await database.WorkerAsync(environment, "backup");
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.EndsWith("; 3 kept, 4 removed", second.StandardOutput.TrimEnd());
        foreach (var days in new[] { 2, 3, 20, 40 })
        {
            Assert.Contains($"    removed {database.DatabaseName}-old{days:D2}d.dump (retention: keep the last 3, at most 10 days old)",
                second.StandardOutput);
        }
        var remaining = Directory.GetFiles(directory.Path, "*.dump").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(4, remaining.Count); // the new one, the first, the one a day old, and the other database's
        Assert.Contains(Path.GetFileName(first), remaining);
        Assert.Contains($"{database.DatabaseName}-old01d.dump", remaining);
        Assert.Contains("other_db-old40d.dump", remaining);
        Assert.All(remaining, name => Assert.True(File.Exists(BackupManifest.PathFor(Path.Combine(directory.Path, name!)))));

        // KeepLast 0 lifts the count limit: nothing here is older than ten days.
        environment["Backup__KeepLast"] = "0";
        var third = await database.WorkerAsync(environment, "backup");
        Assert.True(third.ExitCode == 0, third.ToString());
        Assert.EndsWith("; 4 kept, 0 removed", third.StandardOutput.TrimEnd());
    }

    [Fact]
    public async Task A_failing_pg_dump_leaves_the_existing_backups_and_no_partial_file_and_applies_no_retention()
    {
        using var directory = BackupFixture.NewDirectory("failing");
        var (good, manifest, _) = await database.BackupAsync(directory.Path);
        Fabricate(good, manifest, $"{database.DatabaseName}-old40d.dump", 40, manifest.Database);
        var before = Directory.GetFiles(directory.Path).Order(StringComparer.Ordinal).ToList();

        using var tools = FakeTools("15.99", fails: true);
        var environment = database.WorkerEnvironment(directory.Path);
        environment["Backup__PostgresBin"] = tools.Path;
        environment["Backup__KeepLast"] = "1";
        var failed = await database.WorkerAsync(environment, "backup");
        Assert.Equal(1, failed.ExitCode);
        Assert.Equal("backup failed: pg_dump failed: pg_dump: error: connection to server was lost",
            failed.StandardError.Trim().Split('\n').Last().Trim());
        Assert.Equal(before, Directory.GetFiles(directory.Path).Order(StringComparer.Ordinal).ToList());
    }

    [Fact]
    public async Task A_pg_dump_older_than_the_server_is_refused_in_one_line()
    {
        using var directory = BackupFixture.NewDirectory("oldtool");
        using var tools = FakeTools("9.6.24", fails: false);
        var environment = database.WorkerEnvironment(directory.Path);
        environment["Backup__PostgresBin"] = tools.Path;
        var refused = await database.WorkerAsync(environment, "backup");
        Assert.Equal(1, refused.ExitCode);
        var line = refused.StandardError.Trim().Split('\n').Last().Trim();
        Assert.StartsWith($"backup failed: the local pg_dump is version 9 ({tools.Path}/pg_dump) but the server runs PostgreSQL 15", line);
        Assert.Empty(Directory.GetFiles(directory.Path, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Bad_retention_settings_are_refused_with_exit_2_naming_the_key()
    {
        using var directory = BackupFixture.NewDirectory("badconfig");
        var environment = database.WorkerEnvironment(directory.Path);
        environment["Backup__KeepLast"] = "-1";
        var refused = await database.WorkerAsync(environment, "backup");
        Assert.Equal(2, refused.ExitCode);
        // Checked at the worker's start with its other options, before the verb runs.
        Assert.Equal("Backup:KeepLast must be 0 (no limit) or more.", refused.StandardError.Trim());
    }

    /// <summary>A copy of a real backup under another name, finished <paramref name="daysAgo"/> days before now.</summary>
    private static void Fabricate(string dump, BackupManifest manifest, string name, int daysAgo, string databaseName)
    {
        var copy = Path.Combine(Path.GetDirectoryName(dump)!, name);
        File.Copy(dump, copy);
        var at = DateTimeOffset.UtcNow.AddDays(-daysAgo);
        var fabricated = manifest with { File = name, Database = databaseName, StartedAt = at, FinishedAt = at };
        fabricated.WriteAsync(copy, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>A bin directory whose pg_dump reports <paramref name="version"/> and, asked to dump, writes half a file and fails.</summary>
    private static TemporaryDirectory FakeTools(string version, bool fails)
    {
        var directory = new TemporaryDirectory("fakebin");
        var script = Path.Combine(directory.Path, "pg_dump");
        File.WriteAllText(script, $$"""
            #!/bin/sh
            if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) {{version}}"; exit 0; fi
            for argument in "$@"; do
              case "$argument" in --file=*) printf 'PGDMP half a dump' > "${argument#--file=}" ;; esac
            done
            echo "pg_dump: dumping contents of table \"public.roles\"" >&2
            echo "pg_dump: error: connection to server was lost" >&2
            exit {{(fails ? 1 : 0)}}
            """.ReplaceLineEndings("\n"));
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return directory;
    }
}
