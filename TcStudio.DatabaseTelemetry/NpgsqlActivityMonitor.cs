using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace TcStudio.DatabaseTelemetry;

/// <summary>
/// The one place that sees every PostgreSQL command of the process, EF Core's and raw Npgsql's alike, for the system
/// database and workspace databases: an <see cref="ActivityListener"/> on Npgsql's ActivitySource. It works with or
/// without an OpenTelemetry exporter (Npgsql creates its activities only because some listener asks for them, and
/// this one always does). For each command it records <c>tcstudio.db.query.duration</c>; above
/// Database:SlowQueryThreshold it counts <c>tcstudio.db.slow_queries</c>, logs the command once as a warning (SQL
/// text, never parameter values; duration; the endpoint or worker verb that issued it) and keeps it in the
/// <see cref="SlowQueryLog"/>. It also logs each physical connection Npgsql opens or fails to open (server,
/// database, user; never the password).
/// </summary>
/// <remarks>
/// This runs on the hot path of every query, so the common case (a command under the threshold) does a tag lookup,
/// a keyword scan of the SQL in place and one histogram record, and allocates nothing of its own.
/// </remarks>
public sealed partial class NpgsqlActivityMonitor : IHostedService, IDisposable
{
    public const string NpgsqlSourceName = "Npgsql";
    public const string QueryTextTag = "db.query.text";
    public const string DatabaseNameTag = "db.namespace";
    public const string DataSourceTag = "db.npgsql.data_source";
    public const string WorkerSourceName = "TcStudio.MigrationWorker";

    /// <summary>Longer SQL is cut in logs and in the slow-query log (a generated IN list can be megabytes).</summary>
    public const int MaxSqlLength = 4000;

    private const string AspNetCoreRequestActivity = "Microsoft.AspNetCore.Hosting.HttpRequestIn";

    private readonly DatabaseMetrics _metrics;
    private readonly SlowQueryLog _slowQueries;
    private readonly ILogger _slowQueryLogger;
    private readonly ILogger _connectionLogger;
    private readonly ActivityListener _listener;
    private readonly IDisposable? _optionsSubscription;
    private long _thresholdTicks;
    private int _started;

    public NpgsqlActivityMonitor(DatabaseMetrics metrics, SlowQueryLog slowQueries, IOptionsMonitor<DatabaseTelemetryOptions> options,
        ILoggerFactory loggers)
    {
        _metrics = metrics;
        _slowQueries = slowQueries;
        _slowQueryLogger = loggers.CreateLogger("TcStudio.Database.SlowQueries");
        _connectionLogger = loggers.CreateLogger("TcStudio.Database.Connections");
        SetThreshold(options.CurrentValue);
        _optionsSubscription = options.OnChange(SetThreshold);
        _listener = new ActivityListener
        {
            ShouldListenTo = static source => source.Name == NpgsqlSourceName,
            // Every command is measured; Recorded is left to the tracing pipeline's own sampler.
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            SampleUsingParentId = static (ref ActivityCreationOptions<string> _) => ActivitySamplingResult.AllData,
            ActivityStopped = OnActivityStopped,
        };
    }

    /// <summary>
    /// True inside a caller that reports its own connection failures (the system database's start-up wait, with
    /// progress): the connection log then keeps each failed attempt to Debug, so a console shows one line every few
    /// seconds rather than three per attempt. Flows with the async context, like the attempt itself.
    /// </summary>
    public static bool CallerReportsFailures
    {
        get => CallerReports.Value;
        set => CallerReports.Value = value;
    }

    private static readonly AsyncLocal<bool> CallerReports = new();

    /// <summary>The current threshold; 0 means slow-query detection is off.</summary>
    public TimeSpan SlowQueryThreshold => TimeSpan.FromTicks(Interlocked.Read(ref _thresholdTicks));

    /// <summary>
    /// Tells the connection log how to describe a named data source (Npgsql tags activities with the data source's
    /// name, which for a named source says nothing about where it connects). Same as <see cref="NpgsqlDataSources.Describe"/>.
    /// </summary>
    public void DescribeDataSource(string name, NpgsqlConnectionStringBuilder settings) => NpgsqlDataSources.Describe(name, settings);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Start();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Starts listening (idempotent); the host does this at start.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) == 0) ActivitySource.AddActivityListener(_listener);
    }

    public void Dispose()
    {
        _listener.Dispose();
        _optionsSubscription?.Dispose();
    }

    private void SetThreshold(DatabaseTelemetryOptions options) =>
        Interlocked.Exchange(ref _thresholdTicks,
            options.SlowQueryThreshold > TimeSpan.Zero ? options.SlowQueryThreshold.Ticks : 0);

    private void OnActivityStopped(Activity activity)
    {
        if (activity.GetTagItem(QueryTextTag) is not string sql)
        {
            // Npgsql's other activities: physical connection opens ("CONNECT <database>").
            if (activity.OperationName.StartsWith(ConnectPrefix, StringComparison.Ordinal)) OnConnectionOpened(activity);
            return;
        }

        var duration = activity.Duration;
        var kind = SqlOperationKind.Of(sql);
        _metrics.QueryDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>(DatabaseMetrics.OperationKindTag, kind));

        var threshold = Interlocked.Read(ref _thresholdTicks);
        if (threshold > 0 && duration.Ticks >= threshold) OnSlowQuery(activity, sql, kind, duration);
    }

    private void OnSlowQuery(Activity activity, string sql, string kind, TimeSpan duration)
    {
        var query = new SlowQuery(
            StartedAt: new DateTimeOffset(activity.StartTimeUtc, TimeSpan.Zero),
            DurationMs: Math.Round(duration.TotalMilliseconds, 1),
            Sql: sql.Length > MaxSqlLength ? string.Concat(sql.AsSpan(0, MaxSqlLength), " …") : sql,
            OperationKind: kind,
            Database: activity.GetTagItem(DatabaseNameTag) as string,
            Caller: DescribeCaller(activity),
            Failed: activity.Status == ActivityStatusCode.Error);
        _slowQueries.Add(query);
        _metrics.SlowQueries.Add(1, new KeyValuePair<string, object?>(DatabaseMetrics.OperationKindTag, kind));
        LogSlowQuery(_slowQueryLogger, query.DurationMs, SlowQueryThreshold.TotalMilliseconds, query.Caller,
            query.Database ?? "?", $"{activity.GetTagItem("server.address") ?? "?"}:{activity.GetTagItem("server.port") ?? "?"}", query.Sql);
    }

    /// <summary>
    /// Who issued the command: the HTTP endpoint ("GET /api/workspaces/{id}") of the request it runs under, the
    /// worker verb ("worker migrate"), else the root activity's name, else "background".
    /// </summary>
    public static string DescribeCaller(Activity command)
    {
        Activity? root = null;
        for (var parent = command.Parent; parent is not null; parent = parent.Parent)
        {
            if (parent.OperationName == AspNetCoreRequestActivity)
            {
                var method = parent.GetTagItem("http.request.method") as string;
                var target = parent.GetTagItem("http.route") as string ?? parent.GetTagItem("url.path") as string;
                return target is null ? parent.DisplayName : method is null ? target : $"{method} {target}";
            }
            if (parent.Source.Name == WorkerSourceName) return "worker " + parent.OperationName;
            root = parent;
        }
        return root?.DisplayName ?? "background";
    }

    private void OnConnectionOpened(Activity activity)
    {
        var where = DescribeTarget(activity);
        var elapsedMs = Math.Round(activity.Duration.TotalMilliseconds, 1);
        if (activity.Status == ActivityStatusCode.Error && CallerReportsFailures)
        {
            // The startup wait prints its own progress line every few seconds; each failed attempt is detail.
            _connectionLogger.LogDebug("Could not open a connection to PostgreSQL at {Where}: {Reason} (after {ElapsedMs} ms)",
                where, FailureReason(activity), elapsedMs);
        }
        else if (activity.Status == ActivityStatusCode.Error)
        {
            LogConnectionFailed(_connectionLogger, where, FailureReason(activity), elapsedMs);
        }
        else
        {
            LogConnectionOpened(_connectionLogger, where, elapsedMs);
        }
    }

    /// <summary>
    /// host:port/database as user: registered for every data source the services create (<see cref="NpgsqlDataSources"/>),
    /// by its name and the database, which the activity's name carries ("CONNECT tc_studio") even when the open failed.
    /// Npgsql names a data source made for a bare connection string by that connection string without the password.
    /// </summary>
    private static string DescribeTarget(Activity activity)
    {
        var dataSource = activity.GetTagItem(DataSourceTag) as string ?? "";
        var database = activity.OperationName.StartsWith(ConnectPrefix, StringComparison.Ordinal)
            ? activity.OperationName[ConnectPrefix.Length..]
            : activity.GetTagItem(DatabaseNameTag) as string ?? "";
        if (NpgsqlDataSources.TryDescribe(dataSource, database, out var described)) return described;
        if (dataSource.Contains('='))
        {
            try
            {
                var settings = new NpgsqlConnectionStringBuilder(dataSource);
                settings.Remove("Password"); // never logged, even if a future Npgsql kept it in the name
                return NpgsqlDataSources.DescribeSettings(settings);
            }
            catch (ArgumentException)
            {
                // Not a connection string after all: fall through to the tags.
            }
        }
        return $"{activity.GetTagItem("server.address") ?? "?"}:{activity.GetTagItem("server.port") ?? "?"}/"
            + $"{activity.GetTagItem(DatabaseNameTag) ?? "?"} (data source {dataSource})";
    }

    private const string ConnectPrefix = "CONNECT ";

    /// <summary>
    /// Npgsql's status says "28P01" for a server's refusal (the SQLSTATE alone) and the cause's message otherwise; the
    /// exception event recorded on the activity has the server's whole message ("28P01: password authentication
    /// failed for user ..."), which never holds the password.
    /// </summary>
    private static string FailureReason(Activity activity)
    {
        var status = activity.StatusDescription;
        if (RecordedException(activity) is { } recorded && recorded.Contains("AuthenticationException", StringComparison.Ordinal))
        {
            // .NET's own words ("rejected by the provided RemoteCertificateValidationCallback") do not say what to fix.
            return "TLS: the server's certificate failed verification (not signed by the CA the client trusts, "
                + "or not issued for this host name)";
        }
        if (status is { Length: 5 } && status.All(char.IsAsciiLetterOrDigit))
        {
            foreach (var activityEvent in activity.Events)
            {
                if (activityEvent.Name != "exception") continue;
                foreach (var (key, value) in activityEvent.Tags)
                {
                    if (key == "exception.message" && value is string message && message.StartsWith(status, StringComparison.Ordinal))
                    {
                        return message;
                    }
                }
            }
        }
        return status ?? "unknown error";
    }

    /// <summary>The recorded exception's type and inner exceptions (exception.stacktrace holds the whole ToString()).</summary>
    private static string? RecordedException(Activity activity)
    {
        foreach (var activityEvent in activity.Events)
        {
            if (activityEvent.Name != "exception") continue;
            foreach (var (key, value) in activityEvent.Tags)
            {
                if (key == "exception.stacktrace" && value is string text) return text;
            }
        }
        return null;
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning,
        Message = "Slow query: {DurationMs} ms (threshold {ThresholdMs} ms) from {Caller} in database {Database} on {Server}: {Sql}")]
    private static partial void LogSlowQuery(ILogger logger, double durationMs, double thresholdMs, string caller,
        string database, string server, string sql);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information,
        Message = "Opened a connection to PostgreSQL at {Where} in {ElapsedMs} ms")]
    private static partial void LogConnectionOpened(ILogger logger, string where, double elapsedMs);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Warning,
        Message = "Could not open a connection to PostgreSQL at {Where}: {Reason} (after {ElapsedMs} ms)")]
    private static partial void LogConnectionFailed(ILogger logger, string where, string reason, double elapsedMs);
}
