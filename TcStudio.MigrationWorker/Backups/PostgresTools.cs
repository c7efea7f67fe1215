using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>What a PostgreSQL client tool printed and how it ended.</summary>
public sealed record ToolResult(int ExitCode, string StandardOutput, IReadOnlyList<string> ErrorLines)
{
    /// <summary>The tool's own reason, one line: its last error or fatal line, else its last line.</summary>
    public string Reason =>
        ErrorLines.LastOrDefault(l => l.Contains("error:", StringComparison.OrdinalIgnoreCase) || l.Contains("FATAL", StringComparison.Ordinal))
        ?? ErrorLines.LastOrDefault(l => l.Trim().Length > 0) ?? $"exit code {ExitCode}";
}

/// <summary>
/// Finds and runs the PostgreSQL client tools (pg_dump, pg_restore, pg_basebackup, pg_verifybackup, pg_ctl,
/// pg_archivecleanup). Where they live: <c>Backup:PostgresBin</c>, else <c>PG_BIN</c>, else the newest
/// /usr/lib/postgresql/N/bin, else the PATH. A password never travels on a command line or in the environment: the
/// tools read it from a temporary password file of the caller's own (<see cref="PasswordFile"/>).
/// </summary>
public sealed partial class PostgresTools(string? binDirectory)
{
    public const string PostgresUser = "postgres";

    public string? BinDirectory { get; } = binDirectory is { Length: > 0 } ? binDirectory : FindBinDirectory();

    public string PathOf(string tool) => BinDirectory is null ? tool : Path.Combine(BinDirectory, tool);

    public static bool RunningAsRoot => OperatingSystem.IsLinux() && geteuid() == 0;

    /// <summary>The tool's major version from its --version line ("pg_dump (PostgreSQL) 15.10 (Debian ...)").</summary>
    public async Task<(int Major, string Line)> VersionAsync(string tool, CancellationToken cancellationToken)
    {
        var result = await RunAsync(tool, ["--version"], null, null, cancellationToken);
        var line = result.StandardOutput.Trim();
        var match = VersionPattern().Match(line);
        if (result.ExitCode != 0 || !match.Success)
        {
            throw new BackupException($"{PathOf(tool)} --version did not say its version ({(line.Length > 0 ? line : result.Reason)}).");
        }
        return (int.Parse(match.Groups[1].Value), line);
    }

    /// <summary>
    /// Runs a tool to completion, handing each line of its standard error to <paramref name="onErrorLine"/> as it
    /// comes (progress: pg_dump -v, pg_basebackup -P split on carriage returns too). Cancelling kills it.
    /// </summary>
    public async Task<ToolResult> RunAsync(string tool, IReadOnlyList<string> arguments, PasswordFile? password,
        Action<string>? onErrorLine, CancellationToken cancellationToken, bool asPostgresUser = false)
    {
        var start = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asPostgresUser && RunningAsRoot)
        {
            // pg_ctl and postgres refuse to run as root.
            start.FileName = "runuser";
            foreach (var a in new[] { "-u", PostgresUser, "--", PathOf(tool) }) start.ArgumentList.Add(a);
        }
        else
        {
            start.FileName = PathOf(tool);
        }
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // Only what we pass decides where a tool connects: no inherited PGHOST, PGPASSWORD, PGSERVICE, ...
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("PG", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(key);
        }
        start.Environment["LC_MESSAGES"] = "C";
        if (password is not null) start.Environment["PGPASSFILE"] = password.Path;

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new BackupException($"Could not start {PathOf(tool)}.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new BackupException($"Could not run {PathOf(tool)}: {e.Message}. Install the PostgreSQL client tools "
                + "(apt-get install -y postgresql-client) or set Backup:PostgresBin.");
        }
        using (process)
        {
            var errorLines = new List<string>();
            var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var stderr = Task.Run(async () =>
            {
                var line = new StringBuilder();
                var buffer = new char[4096];
                int read;
                while ((read = await process.StandardError.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    for (var i = 0; i < read; i++)
                    {
                        if (buffer[i] is '\n' or '\r')
                        {
                            if (line.Length > 0) Emit(line.ToString());
                            line.Clear();
                        }
                        else
                        {
                            line.Append(buffer[i]);
                        }
                    }
                }
                if (line.Length > 0) Emit(line.ToString());
            }, cancellationToken);

            void Emit(string line)
            {
                lock (errorLines)
                {
                    errorLines.Add(line);
                    if (errorLines.Count > 200) errorLines.RemoveAt(0);
                }
                onErrorLine?.Invoke(line);
            }

            try
            {
                await process.WaitForExitAsync(cancellationToken);
                await Task.WhenAll(stdout, stderr);
            }
            catch (OperationCanceledException)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // Already gone.
                }
                throw;
            }
            var standardOutput = await stdout;
            lock (errorLines) return new ToolResult(process.ExitCode, standardOutput, errorLines.ToList());
        }
    }

    /// <summary>Throws with the tool's own reason unless it succeeded.</summary>
    public static ToolResult EnsureSuccess(ToolResult result, string what) =>
        result.ExitCode == 0 ? result : throw new BackupException($"{what} failed: {result.Reason.Trim()}");

    /// <summary>The newest installed PostgreSQL's bin directory, or null (then the tools are looked up on the PATH).</summary>
    public static string? FindBinDirectory()
    {
        if (Environment.GetEnvironmentVariable("PG_BIN") is { Length: > 0 } configured) return configured;
        const string debianRoot = "/usr/lib/postgresql";
        if (!Directory.Exists(debianRoot)) return null;
        return Directory.GetDirectories(debianRoot)
            .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d), out var v), Version: v))
            .Where(d => d.Ok && File.Exists(Path.Combine(d.Dir, "bin", "pg_dump")))
            .OrderByDescending(d => d.Version)
            .Select(d => Path.Combine(d.Dir, "bin"))
            .FirstOrDefault();
    }

    /// <summary>Backups hold every row (password hashes included): directories and files are for their owner only.</summary>
    public static void CreatePrivateDirectory(string path)
    {
        if (Directory.Exists(path)) return;
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(path);
        else Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public static void MakePrivate(string file)
    {
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>Hands a path to the postgres user (when root), so a server running as that user can use it.</summary>
    public static void GiveToPostgresUser(string path, bool recursive)
    {
        if (!RunningAsRoot) return;
        Run("chown", recursive ? ["-R", $"{PostgresUser}:{PostgresUser}", path] : [$"{PostgresUser}:{PostgresUser}", path]);
    }

    public static void Run(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new BackupException($"{file} {string.Join(' ', arguments)} failed: {error.Trim()}");
    }

    [GeneratedRegex(@"\(PostgreSQL\)\s+(\d+)")]
    private static partial Regex VersionPattern();

    [DllImport("libc", SetLastError = true)]
    private static extern uint geteuid();
}

/// <summary>
/// A libpq password file of one line (<c>*:*:*:*:password</c>) in a private temporary directory, mode 0600, deleted
/// on dispose: how the tools get the password without it showing in a process list or an environment.
/// </summary>
public sealed class PasswordFile : IDisposable
{
    private readonly string _directory;

    private PasswordFile(string directory, string path)
    {
        _directory = directory;
        Path = path;
    }

    public string Path { get; }

    public static PasswordFile? For(NpgsqlConnectionStringBuilder connection)
    {
        if (string.IsNullOrEmpty(connection.Password)) return null;
        var directory = Directory.CreateTempSubdirectory("tcstudio-pgpass-").FullName;
        var path = System.IO.Path.Combine(directory, "pgpass");
        var escaped = connection.Password.Replace(@"\", @"\\").Replace(":", @"\:");
        var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var stream = new FileStream(path, fileOptions))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write($"*:*:*:*:{escaped}\n");
        }
        return new PasswordFile(directory, path);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: it is a private temporary directory.
        }
    }
}

/// <summary>Npgsql connection strings as libpq connection strings (for the tools), without the password.</summary>
public static class Libpq
{
    public static string ConnectionString(NpgsqlConnectionStringBuilder npgsql, string? database = null)
    {
        var parts = new List<(string Key, string? Value)>
        {
            ("host", npgsql.Host),
            ("port", npgsql.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("dbname", database ?? npgsql.Database),
            ("user", npgsql.Username),
            ("sslmode", npgsql.SslMode switch
            {
                SslMode.Disable => "disable",
                SslMode.Allow => "allow",
                SslMode.Prefer => "prefer",
                SslMode.Require => "require",
                SslMode.VerifyCA => "verify-ca",
                SslMode.VerifyFull => "verify-full",
                _ => null,
            }),
            ("sslrootcert", npgsql.RootCertificate),
            ("sslcert", npgsql.SslCertificate),
            ("sslkey", npgsql.SslKey),
            ("connect_timeout", npgsql.Timeout > 0 ? npgsql.Timeout.ToString(System.Globalization.CultureInfo.InvariantCulture) : null),
            ("application_name", "tcstudio-backup"),
        };
        return string.Join(' ', parts.Where(p => !string.IsNullOrEmpty(p.Value))
            .Select(p => $"{p.Key}='{p.Value!.Replace(@"\", @"\\").Replace("'", @"\'")}'"));
    }
}

/// <summary>A backup or restore step that cannot go on; its message is the one line the verb prints.</summary>
public class BackupException(string message) : Exception(message);
