using System.Diagnostics;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Activities;
using TcStudio.SystemDatabase.Security;
using TcStudio.SystemDatabase.Seeding;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.MigrationWorker;

/// <summary>The worker's verbs. Each prints what it does as it goes and ends with a one-line summary.</summary>
public sealed class WorkerVerbs(
    SystemDatabaseMigrator migrator,
    SystemSeeder seeder,
    WorkspaceVerbs workspaces,
    IConfiguration configuration,
    IHostEnvironment environment,
    ILogger<WorkerVerbs> logger)
{
    private readonly TextWriter _out = Console.Out;

    /// <summary>
    /// What the AppHost runs: migrate, seed, then every workspace environment's base schema. A failing workspace
    /// database is reported but does not fail the run: it must not keep the API (and every other workspace) down.
    /// </summary>
    public async Task<int> MigrateAndSeedAsync(CancellationToken ct)
    {
        RequireWorkspaceSecrets();
        // With the admin string the host ran the roles step before connecting (the owner must exist to migrate as
        // it); again after the migrations, which may have added objects (SECURITY DEFINER functions go to the definer).
        var roles = SystemDatabaseRoles.FromConfiguration(configuration);
        await using var migrationLock = await AcquireLockAsync(ct);
        await ApplyAsync(target: null, ct);
        if (roles is not null) await EnsureRolesAsync(roles.Value, _out, ct);
        await SeedUnlockedAsync(ct);
        await MaintainActivityPartitionsUnlockedAsync(ct);
        var bootstrap = await workspaces.BootstrapAsync(serverName: null, createProvisioner: true, _out, ct);
        if (bootstrap.Failed > 0)
        {
            logger.LogWarning("{Failed} workspace server(s) could not be bootstrapped; see above.", bootstrap.Failed);
        }
        var summary = await workspaces.RunAsync("migrate", workspace: null, environment: null, toVersion: null, _out, ct);
        if (summary.Failed > 0)
        {
            logger.LogWarning("{Failed} workspace environment(s) could not be migrated; see above. Run 'workspaces migrate' once they are reachable.",
                summary.Failed);
        }
        return WorkerExitCodes.Done;
    }

    /// <summary>roles: creates or checks the system database's roles and privileges with ConnectionStrings:postgres.</summary>
    public async Task<int> RolesAsync(CancellationToken ct)
    {
        var roles = SystemDatabaseRoles.FromConfiguration(configuration) ?? throw new MigrationCommandException(
            $"roles needs the server's admin connection string: set ConnectionStrings:{SystemDatabaseRoles.AdminConnectionName} "
            + "(environment variable ConnectionStrings__postgres), a superuser of the server holding the system database.");
        await EnsureRolesAsync(roles, _out, ct);
        return WorkerExitCodes.Done;
    }

    public static async Task EnsureRolesAsync((string Admin, SystemRoleNames Names, SystemDatabaseRoles.Passwords Passwords) roles, TextWriter output,
        CancellationToken ct)
    {
        var stopwatch = Stopwatch.StartNew();
        var lines = await SystemDatabaseRoles.EnsureAsync(roles.Admin, roles.Names, roles.Passwords, ct);
        foreach (var line in lines) output.WriteLine($"  {line}");
        output.WriteLine($"roles: {string.Join(", ", roles.Names.All)} in place on {new Npgsql.NpgsqlConnectionStringBuilder(roles.Admin).Database} "
            + $"({stopwatch.Elapsed.TotalSeconds:0.0} s).");
    }

    /// <summary>workspaces migrate|status|revert: exit 1 when any environment failed.</summary>
    public async Task<int> WorkspacesAsync(string verb, string? workspace, string? environment, int? toVersion, CancellationToken ct)
    {
        RequireWorkspaceSecrets();
        // Under the system lock: two workers never migrate one workspace database at once.
        await using var migrationLock = verb == "status" ? null : await AcquireLockAsync(ct);
        var summary = await workspaces.RunAsync(verb, workspace, environment, toVersion, _out, ct);
        return summary.Failed > 0 ? WorkerExitCodes.Failed : WorkerExitCodes.Done;
    }

    /// <summary>workspaces bootstrap: exit 1 when any server failed.</summary>
    public async Task<int> BootstrapAsync(string? server, bool createProvisioner, CancellationToken ct)
    {
        var summary = await workspaces.BootstrapAsync(server, createProvisioner, _out, ct);
        return summary.Failed > 0 ? WorkerExitCodes.Failed : WorkerExitCodes.Done;
    }

    /// <summary>The workspace roles' passwords are kept encrypted with Workspaces:SecretKey: verbs that touch workspace databases need it.</summary>
    private void RequireWorkspaceSecrets()
    {
        if (WorkspaceSecrets.FindConfigurationError(configuration, environment) is { } error) throw new MigrationCommandException(error);
    }

    public async Task<int> MigrateAsync(string? target, CancellationToken ct)
    {
        await using var migrationLock = await AcquireLockAsync(ct);
        await ApplyAsync(target, ct);
        return WorkerExitCodes.Done;
    }

    public async Task<int> RevertAsync(string? target, CancellationToken ct)
    {
        await using var migrationLock = await AcquireLockAsync(ct);
        var stopwatch = Stopwatch.StartNew();
        var steps = await migrator.RevertAsync(target, step =>
            _out.WriteLine($"  reverted {step.Id} ({step.Duration.TotalMilliseconds:0} ms)"), ct);
        var last = (await migrator.GetStatusAsync(ct)).LastOrDefault(m => m.Applied)?.Id ?? "no migrations (empty)";
        _out.WriteLine(steps.Count == 0
            ? "revert: nothing to revert; no migration is applied."
            : $"revert: reverted {Plural(steps.Count, "migration")} in {stopwatch.Elapsed.TotalSeconds:0.0} s; database is at {last}.");
        return WorkerExitCodes.Done;
    }

    public async Task<int> StatusAsync(CancellationToken ct)
    {
        var states = await migrator.GetStatusAsync(ct);
        foreach (var state in states)
        {
            var label = !state.KnownToCode ? "applied (unknown to this build)" : state.Applied ? "applied" : "pending";
            _out.WriteLine($"  {label,-8} {state.Id}");
        }
        var applied = states.Count(s => s.Applied);
        var pending = states.Count(s => !s.Applied);
        _out.WriteLine($"status: {applied} applied, {pending} pending.");
        return WorkerExitCodes.Done;
    }

    public async Task<int> SeedAsync(CancellationToken ct)
    {
        await using var migrationLock = await AcquireLockAsync(ct);
        await SeedUnlockedAsync(ct);
        return WorkerExitCodes.Done;
    }

    public async Task<int> ResetAsync(bool force, CancellationToken ct)
    {
        if (environment.IsProduction() && !force)
        {
            throw new MigrationCommandException(
                "reset drops every table and is refused in the Production environment; pass --force if you mean it.");
        }
        await using var migrationLock = await AcquireLockAsync(ct);
        _out.WriteLine($"reset: dropping every object in {Describe()} ({environment.EnvironmentName})");
        await migrator.DropEverythingAsync(ct);
        await ApplyAsync(target: null, ct);
        await SeedUnlockedAsync(ct);
        _out.WriteLine("reset: done.");
        return WorkerExitCodes.Done;
    }

    /// <summary>activities partitions: the activity log's monthly partitions ahead of time, and retention.</summary>
    public async Task<int> ActivityPartitionsAsync(CancellationToken ct)
    {
        await using var migrationLock = await AcquireLockAsync(ct);
        await MaintainActivityPartitionsUnlockedAsync(ct);
        return WorkerExitCodes.Done;
    }

    private async Task MaintainActivityPartitionsUnlockedAsync(CancellationToken ct)
    {
        var options = configuration.GetSection(ActivityPartitionOptions.SectionName).Get<ActivityPartitionOptions>()
            ?? new ActivityPartitionOptions();
        if (options.FindError() is { } error) throw new MigrationCommandException(error);
        var stopwatch = Stopwatch.StartNew();
        var connectionString = SystemDatabaseConnection.Build(configuration, "tcstudio-migration-worker");
        connectionString.Pooling = false;
        await using var connection = new Npgsql.NpgsqlConnection(connectionString.ConnectionString);
        await connection.OpenAsync(ct);
        Func<string, CancellationToken, Task>? backup = options.BackupDirectory is { Length: > 0 } directory
            ? (partition, token) => DumpPartitionAsync(connectionString, directory, partition, token)
            : null;
        var report = await ActivityPartitions.MaintainAsync(connection, TimeProvider.System.GetUtcNow(), options, backup,
            line => _out.WriteLine($"  {line}"), ct);
        var retention = options.RetentionMonths is { } months ? $"retention {months} months" : "retention: keep everything";
        _out.WriteLine($"activities: {Plural(report.Partitions, "monthly partition")}, {report.Created.Count} created, "
            + $"{report.Dropped.Count} dropped ({retention}); {Plural((int)Math.Min(report.RowsInDefault, int.MaxValue), "row")} "
            + "in the default partition; "
            + $"in {stopwatch.Elapsed.TotalSeconds:0.0} s.");
    }

    /// <summary>pg_dump -Fc of one partition, before retention drops it; the password goes through a private pgpass file.</summary>
    private static async Task DumpPartitionAsync(Npgsql.NpgsqlConnectionStringBuilder connection, string directory, string partition,
        CancellationToken ct)
    {
        Directory.CreateDirectory(directory);
        var file = Path.Combine(directory, $"{partition}-{DateTime.UtcNow:yyyyMMddTHHmmssZ}.dump");
        var tools = new Backups.PostgresTools(null);
        using var password = Backups.PasswordFile.For(connection);
        var result = await tools.RunAsync("pg_dump",
            ["--format=custom", "--no-password", $"--table=public.{partition}", $"--file={file}",
                $"--dbname={Backups.Libpq.ConnectionString(connection)}"],
            password, onErrorLine: null, ct);
        Backups.PostgresTools.EnsureSuccess(result, $"pg_dump of {partition}");
    }

    public async Task<int> ScriptAsync(bool idempotent, CancellationToken ct)
    {
        _out.Write(await migrator.ScriptAsync(idempotent, ct));
        return WorkerExitCodes.Done;
    }

    private async Task ApplyAsync(string? target, CancellationToken ct)
    {
        var stopwatch = Stopwatch.StartNew();
        var pending = await migrator.GetPendingAsync(ct);
        if (pending.Count > 0) _out.WriteLine($"migrate: {Plural(pending.Count, "pending migration")}");
        var steps = await migrator.MigrateAsync(target, step =>
            _out.WriteLine($"  applied {step.Id} ({step.Duration.TotalMilliseconds:0} ms)"), ct);
        var last = (await migrator.GetStatusAsync(ct)).LastOrDefault(m => m.Applied)?.Id ?? "no migrations";
        _out.WriteLine(steps.Count == 0
            ? $"migrate: up to date at {last}."
            : $"migrate: applied {Plural(steps.Count, "migration")} in {stopwatch.Elapsed.TotalSeconds:0.0} s; database is at {last}.");
    }

    private async Task SeedUnlockedAsync(CancellationToken ct)
    {
        var created = await seeder.SeedAsync(ct);
        foreach (var line in created) _out.WriteLine($"  created {line}");
        _out.WriteLine(created.Count == 0
            ? "seed: nothing to do; everything is already there."
            : $"seed: created {Plural(created.Count, "item")}.");
    }

    private Task<MigrationLock> AcquireLockAsync(CancellationToken ct) =>
        MigrationLock.AcquireAsync(SystemDatabaseConnection.Build(configuration, "tcstudio-migration-worker"), logger, ct);

    private string Describe() =>
        SystemDatabaseConnection.Describe(SystemDatabaseConnection.Build(configuration, "tcstudio-migration-worker"));

    private static string Plural(int count, string noun) => $"{count} {noun}{(count == 1 ? "" : "s")}";
}
