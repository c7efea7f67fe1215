using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.MigrationWorker.Backups;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.MigrationWorker;

/// <summary>
/// The backup verbs (README, "Backups" and "Recovery drill"). Each prints its progress and ends with a one-line
/// summary; failures are one line on stderr: exit 1 when the work failed (corrupt file, mismatch, tool error),
/// 2 when the request or the configuration is wrong.
/// </summary>
public sealed class BackupVerbs(
    IConfiguration configuration,
    IHostEnvironment environment,
    TcStudioDbContext db,
    WorkspaceServerRegistry servers,
    BackupMetrics metrics,
    TimeProvider clock,
    ILogger<BackupVerbs> logger)
{
    private readonly TextWriter _out = Console.Out;

    // ---- backup [--workspaces] ----

    public Task<int> BackupAsync(bool workspaces, CancellationToken ct) => GuardAsync("backup", async () =>
    {
        var run = await RunLogicalBackupAsync(workspaces, _out, ct);
        return run.Failed == 0 ? WorkerExitCodes.Done : WorkerExitCodes.Failed;
    });

    public sealed record LogicalRun(BackupResult System, int WorkspacesBackedUp, int Failed);

    /// <summary>The system database, then (with <paramref name="workspaces"/>) every workspace database; one summary line.</summary>
    public async Task<LogicalRun> RunLogicalBackupAsync(bool workspaces, TextWriter output, CancellationToken ct)
    {
        var options = BackupOptions.Read(configuration);
        var tools = new PostgresTools(options.PostgresBin);
        var connection = BackupOptions.BackupConnection(configuration);
        output.WriteLine($"backup: {SystemDatabaseConnection.Describe(connection)} → {options.ResolvedDirectory}");
        var system = await new LogicalBackup(tools, options, output, clock)
            .RunAsync(new BackupSource(BackupKinds.System, connection, options.ResolvedDirectory), ct);

        var summary = $"backup: {system.Manifest.Database} {Bytes(system.DatabaseBytes)} in {system.Duration.TotalSeconds:0.0} s → "
            + $"{Path.GetFileName(system.File)} ({Bytes(system.Manifest.SizeBytes)}, {system.Manifest.Tables.Count} tables, "
            + $"{system.Manifest.TotalRows:#,0} rows); "
            + $"{system.Kept} kept, {system.Removed} removed";
        if (!workspaces)
        {
            output.WriteLine(summary);
            return new LogicalRun(system, 0, 0);
        }

        var (done, failures) = await BackupWorkspacesAsync(tools, options, output, ct);
        output.WriteLine($"{summary}; workspaces: {done} backed up, {failures.Count} "
            + $"failed{(failures.Count == 0 ? "" : $" ({string.Join(", ", failures)})")}");
        return new LogicalRun(system, done, failures.Count);
    }

    private async Task<(int Done, List<string> Failures)> BackupWorkspacesAsync(PostgresTools tools, BackupOptions options, TextWriter output,
        CancellationToken ct)
    {
        var environments = await db.WorkspaceEnvironments.AsNoTracking()
            .Join(db.Workspaces, e => e.WorkspaceId, w => w.Id, (e, w) => new { e.Name, e.Provider, e.Server, e.DatabaseName, w.Slug })
            .OrderBy(x => x.Slug).ThenBy(x => x.Name)
            .ToListAsync(ct);
        output.WriteLine($"backup --workspaces: {Plural(environments.Count, "workspace database")}");
        var done = 0;
        var failures = new List<string>();
        foreach (var item in environments)
        {
            var label = $"{item.Slug}/{item.Name}";
            output.WriteLine($"  {label} ({item.Provider} {item.Server}/{item.DatabaseName})");
            try
            {
                var server = servers.Find(item.Server)
                    ?? throw new BackupException($"server '{item.Server}' is not registered in this worker's configuration");
                var directory = Path.Combine(options.WorkspacesDirectory, server.Name);
                BackupResult result;
                if (server.Provider == WorkspaceProviders.SqlServer)
                {
                    result = await new SqlServerBackup(options, output, clock)
                        .RunAsync(server, item.DatabaseName, directory, item.Slug, item.Name, ct);
                }
                else
                {
                    var connection = BackupOptions.Patient(
                        new NpgsqlConnectionStringBuilder(WorkspaceBackupConnectionString(server)) { Database = item.DatabaseName });
                    result = await new LogicalBackup(tools, options, output, clock).RunAsync(
                        new BackupSource(BackupKinds.Workspace, connection, directory, server.Name, item.Slug, item.Name), ct);
                }
                done++;
                output.WriteLine($"    {label}: {Bytes(result.DatabaseBytes)} in {result.Duration.TotalSeconds:0.0} s → "
                    + $"{Path.GetRelativePath(options.ResolvedDirectory, result.File)}; {result.Kept} kept, {result.Removed} removed");
            }
            catch (Exception e) when (e is BackupException or BackupConfigurationException or System.Data.Common.DbException
                                          or TimeoutException or IOException or InvalidOperationException
                                      && !ct.IsCancellationRequested)
            {
                failures.Add(label);
                output.WriteLine($"    FAILED: {WorkerHost.OneLine(e)}");
            }
        }
        return (done, failures);
    }

    /// <summary>
    /// Which credential reads a workspace server: <c>WorkspaceServers:&lt;name&gt;:BackupConnectionString</c>; for the
    /// system database's own server (<c>local</c>) <c>ConnectionStrings:backup</c>; else the server's deploy credential.
    /// </summary>
    private string WorkspaceBackupConnectionString(WorkspaceServer server)
    {
        if (configuration[$"{WorkspaceServerRegistry.SectionName}:{server.Name}:BackupConnectionString"] is { Length: > 0 } own) return own;
        if (server.Name == WorkspaceServerRegistry.LocalName
            && configuration.GetConnectionString(BackupOptions.BackupConnectionName) is { Length: > 0 })
        {
            return BackupOptions.BackupConnection(configuration).ConnectionString;
        }
        return server.ConnectionString;
    }

    // ---- backup verify FILE ----

    public Task<int> VerifyAsync(string file, CancellationToken ct) => GuardAsync("backup verify", async () =>
    {
        var stopwatch = Stopwatch.StartNew();
        var options = BackupOptions.Read(configuration);
        file = Path.GetFullPath(file);
        _out.WriteLine($"backup verify: {file}");
        var manifest = await LogicalRestore.CheckFileAsync(file, _out, ct);
        var (server, _) = RestoreServer(manifest);
        var scratch = $"tcstudio_verify_{Guid.NewGuid():N}"[..24];
        _out.WriteLine($"  restoring into the scratch database {scratch} on {server.Host}:{server.Port}");
        RestoreCheck check;
        try
        {
            check = await new LogicalRestore(new PostgresTools(options.PostgresBin), options, _out).RestoreAsync(file, manifest, server, scratch, ct);
        }
        finally
        {
            await LogicalRestore.DropDatabaseAsync(server, scratch, CancellationToken.None);
        }
        if (!check.Matches)
        {
            foreach (var difference in check.Differences) _out.WriteLine($"  DIFFERENT {difference}");
            Console.Error.WriteLine($"backup verify failed: {Path.GetFileName(file)} restores to something else than its manifest describes "
                + $"({Plural(check.Differences.Count, "difference")}, listed above).");
            return WorkerExitCodes.Failed;
        }
        _out.WriteLine($"backup verify: {Path.GetFileName(file)} is good: {manifest.Tables.Count} tables, {manifest.TotalRows:#,0} "
            + "rows match the manifest "
            + $"(restored into a scratch database, checked and dropped in {stopwatch.Elapsed.TotalSeconds:0.0} s).");
        return WorkerExitCodes.Done;
    });

    // ---- restore --from FILE [--into DB] [--force] ----

    public Task<int> RestoreAsync(string file, string? into, bool force, CancellationToken ct) => GuardAsync("restore", async () =>
    {
        var stopwatch = Stopwatch.StartNew();
        var options = BackupOptions.Read(configuration);
        file = Path.GetFullPath(file);
        _out.WriteLine($"restore: {file}");
        var manifest = await LogicalRestore.CheckFileAsync(file, _out, ct);
        var (server, live) = RestoreServer(manifest);
        var target = into ?? $"{Truncate(manifest.Database, 40)}_restored_{clock.GetUtcNow().UtcDateTime:yyyyMMddHHmmss}";
        if (!WorkspaceDatabaseNames.Pattern().IsMatch(target) || target.Length > 63)
        {
            throw new BackupUsageException($"--into '{target}' is not a usable database name (letters, digits and '_', at most 63).");
        }

        var exists = await LogicalRestore.DatabaseExistsAsync(server, target, ct);
        if (exists && !force)
        {
            throw new BackupUsageException($"database {target} already exists{(target == live ? " (it is the live database)" : "")}; restore only "
                + "creates new databases: choose another --into, or add --force in Development to replace it with the restored copy.");
        }
        if (exists && !environment.IsDevelopment())
        {
            throw new BackupUsageException($"--force replaces an existing database only in the Development environment (this is "
                + $"{environment.EnvironmentName}); "
                + "restore into a new database and switch over to it instead (README, \"Recovery drill\").");
        }

        // Over an existing database: restore and check a copy first; the existing one goes only when the copy is good.
        var restoreInto = exists ? $"tcstudio_incoming_{Guid.NewGuid():N}"[..26] : target;
        _out.WriteLine($"  restoring into {restoreInto} (new) on {server.Host}:{server.Port}");
        var check = await new LogicalRestore(new PostgresTools(options.PostgresBin), options, _out)
            .RestoreAsync(file, manifest, server, restoreInto, ct);
        if (!check.Matches)
        {
            foreach (var difference in check.Differences) _out.WriteLine($"  DIFFERENT {difference}");
            if (exists) await LogicalRestore.DropDatabaseAsync(server, restoreInto, CancellationToken.None);
            Console.Error.WriteLine($"restore failed: the restored database differs from the manifest "
                + $"({Plural(check.Differences.Count, "difference")}, listed above); "
                + (exists ? $"{target} was left as it was." : $"{target} is kept for inspection."));
            return WorkerExitCodes.Failed;
        }
        if (exists)
        {
            NpgsqlConnection.ClearAllPools();
            await LogicalRestore.ReplaceAsync(server, target, restoreInto, ct);
            _out.WriteLine($"  replaced {target} with the checked copy (--force, {environment.EnvironmentName})");
        }
        _out.WriteLine($"restore: {Path.GetFileName(file)} → {target} in {stopwatch.Elapsed.TotalSeconds:0.0} s; "
            + $"{manifest.Tables.Count} tables, {manifest.TotalRows:#,0} rows match the manifest.");
        return WorkerExitCodes.Done;
    });

    /// <summary>Where a backup is restored: the system database's server, or the workspace server it came from.</summary>
    private (NpgsqlConnectionStringBuilder Server, string Live) RestoreServer(BackupManifest manifest)
    {
        if (manifest.Kind == BackupKinds.System)
        {
            var server = BackupOptions.RestoreConnection(configuration);
            return (server, server.Database!);
        }
        var workspaceServer = manifest.WorkspaceServer is { } name ? servers.Find(name) : null;
        if (workspaceServer is null || workspaceServer.Provider != WorkspaceProviders.Postgres)
        {
            throw new BackupUsageException($"the backup comes from workspace server '{manifest.WorkspaceServer}', which is not a PostgreSQL "
                + "server registered here.");
        }
        return (BackupOptions.Patient(new NpgsqlConnectionStringBuilder(workspaceServer.ConnectionString)), manifest.Database);
    }

    // ---- backup --base ----

    public Task<int> BaseBackupAsync(CancellationToken ct) => GuardAsync("backup --base", async () =>
    {
        await RunBaseBackupAsync(_out, ct);
        return WorkerExitCodes.Done;
    });

    private async Task<BaseBackupResult> RunBaseBackupAsync(TextWriter output, CancellationToken ct)
    {
        var options = BackupOptions.Read(configuration);
        var connection = BackupOptions.BaseBackupConnection(configuration);
        output.WriteLine($"backup --base: {connection.Host}:{connection.Port} → {options.BaseDirectory}");
        var result = await new BaseBackup(new PostgresTools(options.PostgresBin), options, output).RunAsync(connection, ct);
        output.WriteLine($"backup --base: {Bytes(result.Manifest.SizeBytes)} in {result.Duration.TotalSeconds:0.0} s → "
            + $"base/{result.Manifest.Name}, verified; "
            + $"{result.Kept} kept, {result.Removed} removed"
                + (result.WalRemoved > 0 ? $", {Plural(result.WalRemoved, "archived WAL file")} removed" : "")
            + (result.Manifest.ArchiveMode is "on" or "always" ? ""
                : " (warning: WAL archiving is off on this server: this backup restores only to its own end)"));
        return result;
    }

    // ---- restore --pitr --target-time T [--into DIR], restore stop DIR ----

    public Task<int> PointInTimeAsync(DateTimeOffset targetTime, string? into, CancellationToken ct) => GuardAsync("restore --pitr", async () =>
    {
        var options = BackupOptions.Read(configuration);
        var recovery = new PointInTimeRecovery(new PostgresTools(options.PostgresBin), options, _out, clock);
        var recovered = await recovery.RunAsync(targetTime, into, ct);
        var user = "postgres";
        var database = "postgres";
        if (SystemDatabaseConnection.ReadConnectionString(configuration) is { Length: > 0 })
        {
            var system = SystemDatabaseConnection.Build(configuration, "tcstudio");
            (user, database) = (system.Username ?? user, system.Database ?? database);
        }
        _out.WriteLine($"restore --pitr: recovered to {targetTime.UtcDateTime:yyyy-MM-dd HH:mm:ss.FFFFFF}Z from base backup {recovered.BaseBackup} "
            + $"in {recovered.Duration.TotalSeconds:0.0} s; running on 127.0.0.1:{recovered.Port}, data directory {recovered.DataDirectory}");
        _out.WriteLine($"  connect (the original server's roles and passwords): psql \"host=127.0.0.1 port={recovered.Port} "
            + $"dbname={database} user={user}\"");
        _out.WriteLine($"  stop:  dotnet TcStudio.MigrationWorker.dll restore stop {recovered.DataDirectory}");
        _out.WriteLine($"     or: {recovered.StopCommand}");
        return WorkerExitCodes.Done;
    });

    public Task<int> StopRecoveredAsync(string directory, CancellationToken ct) => GuardAsync("restore stop", async () =>
    {
        var options = BackupOptions.Read(configuration);
        directory = Path.GetFullPath(directory);
        var stopped = await new PointInTimeRecovery(new PostgresTools(options.PostgresBin), options, _out, clock).StopAsync(directory, ct);
        _out.WriteLine(stopped
            ? $"restore stop: stopped the recovered server in {directory} (its data stays there; delete the directory when done)."
            : $"restore stop: no server is running in {directory}.");
        return WorkerExitCodes.Done;
    });

    // ---- backup --schedule CRON ----

    public Task<int> ScheduleAsync(string cron, bool baseBackup, bool workspaces, CancellationToken ct) => GuardAsync("backup --schedule", async () =>
    {
        var schedule = BackupScheduler.Parse(cron);
        var options = BackupOptions.Read(configuration);
        var kind = baseBackup ? BackupScheduler.BaseKind : BackupScheduler.LogicalKind;
        if (BackupScheduler.NewestGoodBackup(options, kind) is { } newest) metrics.SetLastSuccess(kind, newest);
        var scheduler = new BackupScheduler(schedule, cron, kind, BackupOptions.BackupConnection(configuration), metrics, clock, _out, logger,
            async token =>
            {
                if (baseBackup)
                {
                    await RunBaseBackupAsync(_out, token);
                    return true;
                }
                return (await RunLogicalBackupAsync(workspaces, _out, token)).Failed == 0;
            });
        try
        {
            await scheduler.RunAsync(ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            _out.WriteLine("backup --schedule: stopped.");
        }
        return WorkerExitCodes.Done;
    });

    // ---- helpers ----

    private static async Task<int> GuardAsync(string verb, Func<Task<int>> run)
    {
        try
        {
            return await run();
        }
        catch (Exception e) when (e is BackupConfigurationException or BackupUsageException)
        {
            Console.Error.WriteLine($"{verb}: {e.Message}");
            return WorkerExitCodes.BadUsage;
        }
        catch (BackupException e)
        {
            Console.Error.WriteLine($"{verb} failed: {e.Message.ReplaceLineEndings(" ")}");
            return WorkerExitCodes.Failed;
        }
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 10L << 30 => $"{bytes / (double)(1L << 30):0} GB",
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.0} GB",
        >= 10L << 20 => $"{bytes / (double)(1L << 20):0} MB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MB",
        >= 1L << 10 => $"{bytes / 1024.0:0} kB",
        _ => $"{bytes} B",
    };

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length];

    private static string Plural(int count, string noun) => $"{count} {noun}{(count == 1 ? "" : "s")}";
}
