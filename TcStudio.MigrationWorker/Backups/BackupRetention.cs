namespace TcStudio.MigrationWorker.Backups;

/// <summary>
/// Which backups of one database to keep, by count and age: sorted newest first, a backup is removed when it is
/// not among the newest <c>Backup:KeepLast</c> (0: no limit) or when it is older than <c>Backup:KeepDays</c> (0: no
/// limit). The newest backup, the one just made, is always kept. Runs only after a good backup, so a run of
/// failures never leaves a database with fewer backups than before.
/// </summary>
public static class BackupRetention
{
    /// <summary>The items to remove; <paramref name="backups"/> in any order, each with its finish time.</summary>
    public static IReadOnlyList<T> SelectForRemoval<T>(IEnumerable<(T Item, DateTimeOffset At)> backups, DateTimeOffset now, int keepLast,
        double keepDays)
    {
        var ordered = backups.OrderByDescending(b => b.At).ToList();
        var remove = new List<T>();
        for (var i = 1; i < ordered.Count; i++)
        {
            var beyondCount = keepLast > 0 && i >= keepLast;
            var tooOld = keepDays > 0 && now - ordered[i].At > TimeSpan.FromDays(keepDays);
            if (beyondCount || tooOld) remove.Add(ordered[i].Item);
        }
        return remove;
    }

    /// <summary>
    /// Applies retention to the backups in <paramref name="directory"/> of the same database as <paramref name="newest"/>
    /// (same kind and registered server; not the same host:port, which changes when a local cluster takes a free port). Returns how many are kept
    /// (the new one included) and how many were removed.
    /// </summary>
    public static (int Kept, int Removed) Apply(string directory, BackupManifest newest, string newestFile, BackupOptions options,
        DateTimeOffset now, TextWriter output)
    {
        var same = BackupManifest.List(directory)
            .Where(b => b.Manifest.Kind == newest.Kind && b.Manifest.Database == newest.Database
                && b.Manifest.WorkspaceServer == newest.WorkspaceServer)
            .ToList();
        if (!same.Any(b => b.File == newestFile)) same.Add((newestFile, newest));
        var remove = SelectForRemoval(same.Select(b => (b.File, b.Manifest.FinishedAt)), now, options.KeepLast, options.KeepDays)
            .Where(file => file != newestFile)
            .ToList();
        foreach (var file in remove)
        {
            if (File.Exists(file)) File.Delete(file);
            File.Delete(BackupManifest.PathFor(file));
            output.WriteLine($"    removed {Path.GetFileName(file)} (retention: keep {Describe(options)})");
        }
        return (same.Count - remove.Count, remove.Count);
    }

    private static string Describe(BackupOptions options) =>
        (options.KeepLast, options.KeepDays) switch
        {
            (0, 0) => "all",
            (var last, 0) => $"the last {last}",
            (0, var days) => $"{days:0.##} days",
            (var last, var days) => $"the last {last}, at most {days:0.##} days old",
        };
}
