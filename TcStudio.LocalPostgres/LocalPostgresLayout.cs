using System.Security.Cryptography;
using System.Text;

namespace TcStudio.LocalPostgres;

/// <summary>Where a developer's cluster lives and how to reach it by hand; what its server process is.</summary>
public static class LocalPostgresLayout
{
    /// <summary>
    /// Not root: <c>.tcstudio/postgres</c> in the repository (git-ignored). Root: PostgreSQL runs as the postgres
    /// user, who cannot reach a root-only home directory, so the cluster lives under /var/lib/tcstudio, one folder per
    /// repository path (a short hash of it), so two clones never share a cluster.
    /// </summary>
    public static string DefaultStateDirectory(string repositoryRoot, bool runningAsRoot)
    {
        if (!runningAsRoot) return Path.Combine(repositoryRoot, ".tcstudio", "postgres");
        var normalized = Path.TrimEndingDirectorySeparator(Path.GetFullPath(repositoryRoot));
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(normalized)))[..12].ToLowerInvariant();
        return Path.Combine("/var/lib/tcstudio", hash);
    }

    /// <summary>The psql command line that opens <paramref name="database"/> over the cluster's own socket.</summary>
    public static string PsqlCommand(LocalPostgresCluster cluster, string database) =>
        LocalPostgresCluster.RunningAsRoot
            ? $"runuser -u postgres -- psql -h {cluster.DataDirectory} -p {cluster.Port} {database}"
            : $"psql -h {cluster.DataDirectory} -p {cluster.Port} -U {LocalPostgresCluster.Superuser} {database}";

    /// <summary>The server's process id from postmaster.pid (its first line), or null when it is not running.</summary>
    public static int? ReadPostmasterId(LocalPostgresCluster cluster)
    {
        try
        {
            return int.TryParse(File.ReadLines(Path.Combine(cluster.DataDirectory, "postmaster.pid")).FirstOrDefault(), out var pid)
                ? pid
                : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>True while the process exists (signal 0 probes without signalling).</summary>
    public static bool IsAlive(int pid) => OperatingSystem.IsWindows()
        ? ProcessExists(pid)
        : Kill(pid, 0) == 0 || System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == 1; // EPERM: exists, not ours

    private static bool ProcessExists(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
