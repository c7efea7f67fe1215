namespace TcStudio.Tests.Backups;

/// <summary>
/// What restore and verify report when a backup and its manifest disagree: a flipped byte is corruption, found
/// before anything is restored; a database that restores to other rows than the manifest lists each difference.
/// </summary>
public sealed class BackupIntegrityTests(BackupFixture database) : IClassFixture<BackupFixture>
{
    [Fact]
    public async Task A_flipped_byte_is_reported_as_corruption_before_anything_is_restored()
    {
        using var directory = BackupFixture.NewDirectory("corrupt");
        var (dump, _, _) = await database.BackupAsync(directory.Path);
        var bytes = await File.ReadAllBytesAsync(dump);
        bytes[bytes.Length / 2] ^= 0x01;
        await File.WriteAllBytesAsync(dump, bytes);

        var verify = await database.WorkerAsync(directory.Path, "backup", "verify", dump);
        Assert.Equal(1, verify.ExitCode);
        Assert.Matches($@"backup verify failed: {Path.GetFileName(dump)} is corrupt: its SHA-256 is [0-9a-f]{{16}}… \([\d,]+ bytes\) "
            + @"but the manifest says [0-9a-f]{16}… .*; nothing was restored\.",
            verify.StandardError);
        Assert.DoesNotContain("restoring", verify.StandardOutput);

        var restore = await database.WorkerAsync(directory.Path, "restore", "--from", dump);
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains("is corrupt", restore.StandardError);
        Assert.DoesNotContain("restoring into", restore.StandardOutput);
        Assert.Empty(await database.DatabasesLikeAsync(database.DatabaseName + "_restored_")); // the default target was never created

        var missingManifest = Path.Combine(directory.Path, "orphan.dump");
        File.Copy(dump, missingManifest);
        var orphan = await database.WorkerAsync(directory.Path, "restore", "--from", missingManifest);
        Assert.Equal(1, orphan.ExitCode);
        Assert.Contains("orphan.dump has no manifest beside it", orphan.StandardError);
    }

    [Fact]
    public async Task Restore_lists_each_table_that_differs_from_the_manifest_and_exits_1()
    {
        using var directory = BackupFixture.NewDirectory("mismatch");
        var (dump, _, _) = await database.BackupAsync(directory.Path);
        // The file is intact (its SHA-256 matches); the manifest claims other contents.
        BackupFixture.EditManifest(dump, manifest =>
        {
            foreach (var table in manifest["tables"]!.AsArray())
            {
                if ((string)table!["table"]! == "public.users") table["rows"] = (long)table["rows"]! + 1;
                if ((string)table!["table"]! == "public.roles") table["checksum"] = new string('0', 64);
            }
        });
        var restoredName = database.DatabaseName + "_mismatch";
        try
        {
            var restore = await database.WorkerAsync(directory.Path, "restore", "--from", dump, "--into", restoredName);
            Assert.Equal(1, restore.ExitCode);
            Assert.Matches(@"(?m)^  DIFFERENT public\.roles: same row count \(2\) but the content checksum differs", restore.StandardOutput);
            Assert.Matches(@"(?m)^  DIFFERENT public\.users: 3 rows in the manifest, 2 restored", restore.StandardOutput);
            Assert.Equal(2, restore.StandardOutput.Split('\n').Count(l => l.StartsWith("  DIFFERENT", StringComparison.Ordinal)));
            Assert.Contains("restore failed: the restored database differs from the manifest (2 differences, listed above); "
                + $"{restoredName} is kept for inspection.",
                restore.StandardError);

            var verify = await database.WorkerAsync(directory.Path, "backup", "verify", dump);
            Assert.Equal(1, verify.ExitCode);
            Assert.Contains("(2 differences, listed above)", verify.StandardError);
            await database.AssertScratchDatabaseGoneAsync(verify);
        }
        finally
        {
            await database.Server.DropDatabaseAsync(restoredName);
        }
    }
}
