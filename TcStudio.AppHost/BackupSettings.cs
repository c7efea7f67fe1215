using Microsoft.Extensions.Configuration;
using TcStudio.AppHost.Postgres;
using TcStudio.LocalPostgres;

namespace TcStudio.AppHost;

/// <summary>
/// The AppHost:Backup section: WAL archiving on the local cluster and a scheduled-backup resource, both off by
/// default (a development machine should not fill its disk with WAL nobody asked for).
/// </summary>
public sealed record BackupSettings
{
    public const string WalArchiveKey = "AppHost:Backup:WalArchive";
    public const string ScheduleKey = "AppHost:Backup:Schedule";
    public const string BaseKey = "AppHost:Backup:Base";
    public const string SchedulerResourceName = "backup-scheduler";

    /// <summary>Where the workers write backups: <c>backups/</c> beside the local cluster's data.</summary>
    public required string Directory { get; init; }

    /// <summary>The WAL archive directory when archiving is on (local cluster only), else null.</summary>
    public string? WalArchive { get; init; }

    /// <summary>A cron expression (UTC) for the scheduler resource, else null (no resource).</summary>
    public string? Schedule { get; init; }

    /// <summary>Scheduled backups are base backups (pg_basebackup, for point-in-time recovery) rather than logical ones.</summary>
    public bool Base { get; init; }

    public static BackupSettings Read(IConfiguration configuration, PostgresSettings postgres)
    {
        var archive = ReadSwitch(configuration, WalArchiveKey);
        if (archive && postgres.Mode != PostgresMode.Local)
        {
            throw new AppHostConfigurationException(
                $"{WalArchiveKey}=true needs the local cluster (AppHost:Postgres:Mode=local): a container or an existing server archives WAL its own "
                    + "way (README, \"Recovery drill\").");
        }
        var baseBackups = ReadSwitch(configuration, BaseKey);
        var schedule = configuration[ScheduleKey] is { Length: > 0 } cron ? cron.Trim() : null;
        if (schedule is not null && (schedule.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length is < 5 or > 6 || schedule.Contains('"')))
        {
            throw new AppHostConfigurationException($"{ScheduleKey} must be a cron expression of 5 fields (or 6 with seconds), e.g. \"0 3 * * *\".");
        }
        if (baseBackups && !archive)
        {
            throw new AppHostConfigurationException($"{BaseKey}=true needs {WalArchiveKey}=true: a base backup is only useful with the "
                + "WAL archived after it.");
        }
        var state = postgres.Local.StateDirectory;
        return new BackupSettings
        {
            Directory = Path.Combine(state, "backups"),
            WalArchive = archive ? Path.Combine(state, "wal-archive") : null,
            Schedule = schedule,
            Base = baseBackups,
        };
    }

    /// <summary>The local cluster's options with the archiving settings when archiving is on.</summary>
    public LocalPostgresOptions Apply(LocalPostgresOptions local) =>
        WalArchive is null ? local : local with
        {
            Settings = new Dictionary<string, string>(local.Settings.Concat(TcStudio.LocalPostgres.WalArchive.ServerSettings(WalArchive)))
        };

    private static bool ReadSwitch(IConfiguration configuration, string key) =>
        configuration[key] switch
        {
            null or "" => false,
            var value when bool.TryParse(value, out var on) => on,
            _ => throw new AppHostConfigurationException($"{key} must be true or false."),
        };
}
