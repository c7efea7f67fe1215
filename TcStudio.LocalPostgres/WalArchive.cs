namespace TcStudio.LocalPostgres;

/// <summary>
/// WAL archiving on a server TC Studio runs itself: the settings that make PostgreSQL copy every finished WAL segment
/// into <c>Backup:WalArchive</c> (the AppHost's local cluster with <c>AppHost:Backup:WalArchive=true</c>, the tests'
/// PITR cluster). The directory must be on the server's host and writable by the server's user
/// (postgres); restore --pitr reads it back. (Managed servers archive WAL themselves: README, "Recovery drill".)
/// </summary>
public static class WalArchive
{
    /// <summary>
    /// Copies a segment to a temporary name and renames it, so a crash never leaves half a segment under the real
    /// name; a segment already there is accepted only when identical (a retry after a crash), never overwritten.
    /// </summary>
    public static string ArchiveCommand(string directory)
    {
        var d = Check(directory);
        return $"test -f '{d}/%f' && cmp -s '%p' '{d}/%f' || (test ! -f '{d}/%f' && cp '%p' '{d}/%f.tmp' && mv '{d}/%f.tmp' '{d}/%f')";
    }

    /// <summary>The server settings (archive_mode needs a restart to change; archive_command a reload).</summary>
    public static IReadOnlyDictionary<string, string> ServerSettings(string directory) => new Dictionary<string, string>
    {
        ["wal_level"] = "replica",
        ["archive_mode"] = "on",
        ["archive_command"] = ArchiveCommand(directory),
    };

    /// <summary>Creates the archive directory and hands it to the postgres user (when root: the server runs as postgres).</summary>
    public static void PrepareDirectory(string directory)
    {
        Directory.CreateDirectory(Check(directory));
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") return;
        using var chown = System.Diagnostics.Process.Start("chown", ["postgres:postgres", directory]);
        chown.WaitForExit();
        if (chown.ExitCode != 0) throw new InvalidOperationException($"chown postgres {directory} failed.");
    }

    private static string Check(string directory)
    {
        var full = Path.GetFullPath(directory).TrimEnd('/');
        if (full.IndexOfAny(['\'', '"', '%', '\n', '\r', '\\']) >= 0)
        {
            throw new ArgumentException("The WAL archive directory (Backup:WalArchive) must not contain quotes, '%', backslashes or line breaks: it "
                + "goes into archive_command.");
        }
        return full;
    }
}
