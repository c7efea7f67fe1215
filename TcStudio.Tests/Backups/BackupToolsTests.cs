using System.Diagnostics;
using Npgsql;
using TcStudio.LocalPostgres;
using TcStudio.MigrationWorker;
using TcStudio.MigrationWorker.Backups;

namespace TcStudio.Tests.Backups;

/// <summary>
/// The small pieces the backup verbs stand on: how the tools get their connection and password (never on a command
/// line), how a target time is read, and the archive_command run by a real shell.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // file modes, /bin/sh
public sealed class BackupToolsTests
{
    [Fact]
    public void The_tools_connection_string_quotes_values_and_never_holds_the_password()
    {
        var npgsql = new NpgsqlConnectionStringBuilder(
            "Host=db.example;Port=6432;Database=tc's db;Username=back\\up;Password=s3cr3t;SSL Mode=VerifyFull;Timeout=7");
        var libpq = Libpq.ConnectionString(npgsql);
        Assert.Equal(@"host='db.example' port='6432' dbname='tc\'s db' user='back\\up' sslmode='verify-full' connect_timeout='7' "
            + "application_name='tcstudio-backup'", libpq);
        Assert.DoesNotContain("s3cr3t", libpq);
    }

    [Fact]
    public void The_password_file_escapes_the_password_is_private_and_goes_away()
    {
        string path;
        using (var file = PasswordFile.For(new NpgsqlConnectionStringBuilder { Password = @"a:b\c" })!)
        {
            path = file.Path;
            Assert.Equal("*:*:*:*:a\\:b\\\\c\n", File.ReadAllText(path));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
        Assert.False(File.Exists(path));
        Assert.Null(PasswordFile.For(new NpgsqlConnectionStringBuilder()));
    }

    [Theory]
    [InlineData("2026-11-29T14:02:00Z")]
    [InlineData("2026-11-29 14:02:00")]
    [InlineData("2026-11-29T15:02:00+01:00")]
    [InlineData("2026-11-29 14:02:00+00")]
    public void A_target_time_is_read_as_ISO_8601_and_without_an_offset_as_UTC(string text) =>
        Assert.Equal(new DateTimeOffset(2026, 11, 29, 14, 2, 0, TimeSpan.Zero), BackupCommandLine.ParseTime(text));

    [Fact]
    public void A_target_time_that_is_not_a_time_is_refused() => Assert.Null(BackupCommandLine.ParseTime("yesterday at two"));

    [Fact]
    public async Task The_archive_command_copies_a_segment_accepts_an_identical_retry_and_never_overwrites_a_different_one()
    {
        using var archive = new TemporaryDirectory("archive-command");
        using var data = new TemporaryDirectory("archive-data");
        var segment = Path.Combine(data.Path, "000000010000000000000007");
        await File.WriteAllTextAsync(segment, "WAL bytes");
        var command = WalArchive.ArchiveCommand(archive.Path).Replace("%p", segment).Replace("%f", "000000010000000000000007");

        Assert.Equal(0, await ShellAsync(command));
        Assert.Equal("WAL bytes", await File.ReadAllTextAsync(Path.Combine(archive.Path, "000000010000000000000007")));
        Assert.Equal(0, await ShellAsync(command)); // the server retries after a crash: same bytes, fine
        await File.WriteAllTextAsync(segment, "other bytes");
        Assert.NotEqual(0, await ShellAsync(command)); // never overwrite a different segment
        Assert.Equal("WAL bytes", await File.ReadAllTextAsync(Path.Combine(archive.Path, "000000010000000000000007")));
        Assert.Single(Directory.GetFiles(archive.Path)); // no temporary file left

        Assert.Throws<ArgumentException>(() => WalArchive.ArchiveCommand("/tmp/it's"));
        Assert.Equal("on", WalArchive.ServerSettings(archive.Path)["archive_mode"]);
    }

    private static async Task<int> ShellAsync(string command)
    {
        using var shell = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", command]) { RedirectStandardError = true })!;
        await shell.StandardError.ReadToEndAsync();
        await shell.WaitForExitAsync();
        return shell.ExitCode;
    }
}
