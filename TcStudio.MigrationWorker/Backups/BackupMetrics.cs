using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection.Extensions;
using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>
/// Meter <c>TcStudio.Backup</c>: <c>tcstudio.backup.last_success</c> (seconds since the last good backup, per
/// <c>tcstudio.backup.kind</c> logical|base; no value until there has been one) and <c>tcstudio.backup.duration</c>
/// (seconds per run, tagged with the kind and <c>outcome</c> success|failure). An alert watches the first: a scheduler
/// that stopped running, or runs that keep failing, both make it grow.
/// </summary>
public sealed class BackupMetrics
{
    public const string MeterName = "TcStudio.Backup";
    public const string LastSuccessName = "tcstudio.backup.last_success";
    public const string DurationName = "tcstudio.backup.duration";
    public const string KindTag = "tcstudio.backup.kind";
    public const string OutcomeTag = "outcome";

    private readonly TimeProvider _clock;
    private readonly Histogram<double> _duration;
    private readonly Dictionary<string, DateTimeOffset> _lastSuccess = [];

    public BackupMetrics(IMeterFactory meters, TimeProvider clock)
    {
        _clock = clock;
        var meter = meters.Create(MeterName);
        _duration = meter.CreateHistogram<double>(DurationName, "s", "How long each backup run took.");
        meter.CreateObservableGauge(LastSuccessName, ObserveLastSuccess, "s", "Seconds since the last good backup.");
    }

    public void RecordRun(string kind, TimeSpan duration, bool succeeded)
    {
        _duration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>(KindTag, kind),
            new KeyValuePair<string, object?>(OutcomeTag, succeeded ? "success" : "failure"));
        if (succeeded) SetLastSuccess(kind, _clock.GetUtcNow());
    }

    /// <summary>Also set at start from the newest backup on disk, so a restarted scheduler keeps the alert honest.</summary>
    public void SetLastSuccess(string kind, DateTimeOffset at)
    {
        lock (_lastSuccess)
        {
            if (!_lastSuccess.TryGetValue(kind, out var known) || at > known) _lastSuccess[kind] = at;
        }
    }

    private IEnumerable<Measurement<double>> ObserveLastSuccess()
    {
        var now = _clock.GetUtcNow();
        lock (_lastSuccess)
        {
            return _lastSuccess.Select(entry => new Measurement<double>(Math.Max(0, (now - entry.Value).TotalSeconds),
                new KeyValuePair<string, object?>(KindTag, entry.Key))).ToList();
        }
    }
}

public static class BackupServiceExtensions
{
    /// <summary>The backup verbs and their metrics (exported with the worker's other telemetry).</summary>
    public static IHostApplicationBuilder AddBackups(this IHostApplicationBuilder builder)
    {
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddMetrics();
        builder.Services.TryAddSingleton<BackupMetrics>();
        // Checked at start like every other section, so a bad Backup key stops the worker (and the scheduler) at once.
        builder.Services.AddOptions<BackupOptions>().BindConfiguration(BackupOptions.SectionName)
            .ValidateWith(options => options.FindProblem())
            .ValidateOnStart();
        builder.Services.AddScoped<BackupVerbs>();
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(BackupMetrics.MeterName));
        return builder;
    }
}
