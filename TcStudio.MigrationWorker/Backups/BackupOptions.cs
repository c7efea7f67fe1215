using Npgsql;
using TcStudio.SystemDatabase;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>
/// The <c>Backup</c> section. Bound and validated at start with the worker's other options (AddBackups), and read again
/// per verb with the same check; <see cref="FindProblem"/> names a wrong key in one line (exit 2).
/// </summary>
public sealed class BackupOptions
{
    public const string SectionName = "Backup";

    /// <summary>Where logical backups (and base/ for base backups) go. Default: backups/ under the working directory.</summary>
    public string Directory { get; set; } = "";

    /// <summary>Keep at most this many backups per database (0: no limit by count). The newest good one is always kept.</summary>
    public int KeepLast { get; set; } = 7;

    /// <summary>Remove backups older than this many days (0: no limit by age). The newest good one is always kept.</summary>
    public double KeepDays { get; set; } = 30;

    /// <summary>pg_dump's gzip level, 0 (none) to 9.</summary>
    public int CompressionLevel { get; set; } = 6;

    /// <summary>pg_restore's parallel jobs.</summary>
    public int RestoreJobs { get; set; } = Math.Clamp(System.Environment.ProcessorCount, 1, 4);

    /// <summary>Where the PostgreSQL client tools are (default: the newest installed, else the PATH).</summary>
    public string? PostgresBin { get; set; }

    /// <summary>SQL Server workspace databases: a directory on the SQL Server host that BACKUP DATABASE writes to.</summary>
    public string? SqlServerDirectory { get; set; }

    /// <summary>The WAL archive directory (archive_command copies finished WAL segments here).</summary>
    public string? WalArchive { get; set; }

    /// <summary>Base backups kept; archived WAL older than the oldest kept one is removed.</summary>
    public int KeepBaseBackups { get; set; } = 2;

    /// <summary>
    /// Where <c>restore --pitr</c> builds its data directories when no --into is given. Default: <c>recovered/</c> next to
    /// the backup directory (not inside it: that one is private to the worker's user, and the recovered server runs as
    /// the postgres user when the worker is root).
    /// </summary>
    public string? RecoveryDirectory { get; set; }

    /// <summary>How long a point-in-time recovery may take to reach its target.</summary>
    public TimeSpan RecoveryTimeout { get; set; } = TimeSpan.FromMinutes(30);

    public string ResolvedDirectory => Path.GetFullPath(Directory is { Length: > 0 } d ? d : "backups");
    public string BaseDirectory => Path.Combine(ResolvedDirectory, "base");
    public string WorkspacesDirectory => Path.Combine(ResolvedDirectory, "workspaces");
    public string ResolvedRecoveryDirectory => RecoveryDirectory is { Length: > 0 } r
        ? Path.GetFullPath(r)
        : Path.Combine(Path.GetDirectoryName(ResolvedDirectory) ?? ResolvedDirectory, "recovered");

    public static BackupOptions Read(IConfiguration configuration)
    {
        var options = new BackupOptions();
        try
        {
            configuration.GetSection(SectionName).Bind(options);
        }
        catch (InvalidOperationException e) when (TcStudio.SystemDatabase.Configuration.OptionsErrors.Describe(e) is { } line)
        {
            // The binder's own message quotes the value; this line names the key only.
            throw new BackupConfigurationException(line);
        }
        if (options.FindProblem() is { } problem) throw new BackupConfigurationException(problem);
        return options;
    }

    public string? FindProblem() =>
        KeepLast < 0 ? "Backup:KeepLast must be 0 (no limit) or more."
        : KeepDays < 0 ? "Backup:KeepDays must be 0 (no limit) or more."
        : CompressionLevel is < 0 or > 9 ? "Backup:CompressionLevel must be 0 to 9."
        : RestoreJobs < 1 ? "Backup:RestoreJobs must be 1 or more."
        : KeepBaseBackups < 1 ? "Backup:KeepBaseBackups must be 1 or more."
        : RecoveryTimeout <= TimeSpan.Zero ? "Backup:RecoveryTimeout must be positive."
        : null;

    /// <summary>The connection string the backup reads with: <c>ConnectionStrings:backup</c>, else the system one.</summary>
    public const string BackupConnectionName = "backup";

    /// <summary>The connection string restore creates databases with: <c>ConnectionStrings:restore</c>, else the system one.</summary>
    public const string RestoreConnectionName = "restore";

    public static NpgsqlConnectionStringBuilder BackupConnection(IConfiguration configuration) =>
        Credential(configuration, BackupConnectionName);

    /// <summary>
    /// What <c>pg_basebackup</c> connects with: it needs the REPLICATION right, which the read-only backup role does not
    /// have, so the server's admin string (<c>ConnectionStrings:postgres</c>) when there is one, else the backup one.
    /// </summary>
    public static NpgsqlConnectionStringBuilder BaseBackupConnection(IConfiguration configuration) =>
        Credential(configuration,
            configuration.GetConnectionString(TcStudio.SystemDatabase.Security.SystemDatabaseRoles.AdminConnectionName) is { Length: > 0 }
                ? TcStudio.SystemDatabase.Security.SystemDatabaseRoles.AdminConnectionName
                : BackupConnectionName);

    public static NpgsqlConnectionStringBuilder RestoreConnection(IConfiguration configuration) =>
        Credential(configuration, RestoreConnectionName);

    private static NpgsqlConnectionStringBuilder Credential(IConfiguration configuration, string name)
    {
        var system = SystemDatabaseConnection.Build(configuration, "tcstudio-backup");
        if (configuration.GetConnectionString(name) is not { Length: > 0 } own) return Patient(system);
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(own);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            throw new BackupConfigurationException($"Connection string 'ConnectionStrings:{name}' is malformed.");
        }
        // The same server and database as the system one unless it says otherwise.
        if (string.IsNullOrEmpty(builder.Host)) builder.Host = system.Host;
        if (!builder.Keys.Cast<string>().Contains("Port", StringComparer.OrdinalIgnoreCase)) builder.Port = system.Port;
        if (string.IsNullOrEmpty(builder.Database)) builder.Database = system.Database;
        builder.ApplicationName = "tcstudio-backup";
        return Patient(builder);
    }

    /// <summary>
    /// A backup is a batch job, not a request: it waits longer for a connection than the API's short connect timeout
    /// (a busy server must not fail a nightly backup), and its statements have no time limit.
    /// </summary>
    public static NpgsqlConnectionStringBuilder Patient(NpgsqlConnectionStringBuilder builder)
    {
        builder.Timeout = Math.Max(builder.Timeout, 30);
        builder.CommandTimeout = 0;
        return builder;
    }
}

/// <summary>A configuration mistake: one line naming the key; exit 2.</summary>
public sealed class BackupConfigurationException(string message) : Exception(message);
