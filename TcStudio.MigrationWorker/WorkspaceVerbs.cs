using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.MigrationWorker;

/// <summary>
/// <c>workspaces migrate|status|revert [--workspace &lt;slug&gt;] [--env &lt;name&gt;]</c>: the workspace base schema, over every
/// environment (or those selected), one after another. migrate also converts environments made by an earlier version
/// (per-environment roles, marker, claim) and creates a seeded environment's database; <c>workspaces bootstrap</c>
/// prepares servers with their admin credential. Each environment prints its progress; a failing one prints a
/// one-line reason and the run goes on to the next; a summary line (naming the failed ones) ends the run. The environment rows'
/// schema_version, status and last_error are kept current.
/// </summary>
public sealed class WorkspaceVerbs(TcStudioDbContext db, WorkspaceDatabaseService databases, EnvironmentProvisioning provisioning,
    WorkspaceServerRegistry servers, IConfiguration configuration, TimeProvider clock)
{
    public sealed record Summary(int Environments, int Succeeded, int Failed);

    private sealed record Selected(WorkspaceEnvironment Environment, string Slug)
    {
        public string Label => $"{Slug}/{Environment.Name} ({Environment.Provider} {Environment.Server}/{Environment.DatabaseName})";
    }

    public async Task<Summary> RunAsync(string verb, string? workspace, string? environment, int? toVersion, TextWriter output,
        CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var query = db.WorkspaceEnvironments.AsNoTracking()
            .Join(db.Workspaces, e => e.WorkspaceId, w => w.Id, (e, w) => new { Environment = e, w.Slug });
        if (workspace is not null) query = query.Where(x => x.Slug == workspace);
        if (environment is not null) query = query.Where(x => x.Environment.Name == environment);
        var selected = (await query.OrderBy(x => x.Slug).ThenBy(x => x.Environment.Name).ToListAsync(cancellationToken))
            .Select(x => new Selected(x.Environment, x.Slug)).ToList();
        if (selected.Count == 0 && (workspace is not null || environment is not null))
        {
            throw new MigrationCommandException($"No environment "
                + $"matches{(workspace is null ? "" : $" --workspace {workspace}")}{(environment is null ? "" : $" --env {environment}")}.");
        }

        output.WriteLine($"workspaces {verb}: {Plural(selected.Count, "environment")}");
        var failures = new List<string>();
        foreach (var item in selected)
        {
            output.WriteLine($"  {item.Label}");
            var target = WorkspaceDatabaseService.TargetOf(item.Environment, item.Slug);
            try
            {
                var (ok, line) = verb switch
                {
                    "migrate" => (true, await MigrateAsync(item, target, output, cancellationToken)),
                    "status" => await StatusAsync(item, target, cancellationToken),
                    "revert" => (true, await RevertAsync(item, target, toVersion, output, cancellationToken)),
                    _ => throw new MigrationCommandException($"Unknown workspaces verb '{verb}'."),
                };
                if (!ok) failures.Add($"{item.Slug}/{item.Environment.Name}");
                output.WriteLine($"    {(ok ? "" : "FAILED: ")}{line}");
            }
            catch (Exception e) when (e is WorkspaceDatabaseException or System.Data.Common.DbException or TimeoutException)
            {
                failures.Add($"{item.Slug}/{item.Environment.Name}");
                var (status, error) = WorkspaceEnvironmentState.From(e);
                await RecordAsync(item, null, status, error);
                output.WriteLine($"    FAILED: {(e is WorkspaceDatabaseException ? e.Message.ReplaceLineEndings(" ") : WorkerHost.OneLine(e))}");
            }
        }
        var failed = failures.Count;
        output.WriteLine($"workspaces {verb}: {selected.Count - failed} ok, {failed} "
            + $"failed{(failed == 0 ? "" : $" ({string.Join(", ", failures)})")}, "
            + $"in {stopwatch.Elapsed.TotalSeconds:0.0} s.");
        return new Summary(selected.Count, selected.Count - failed, failed);
    }

    private async Task<string> MigrateAsync(Selected item, WorkspaceTarget target, TextWriter output, CancellationToken ct)
    {
        var result = await provisioning.MigrateAsync(item.Environment, item.Slug,
            step => output.WriteLine($"    applied {step.Migration.Id} ({step.Duration.TotalMilliseconds:0} ms)"), ct);
        foreach (var note in result.Notes) output.WriteLine($"    {note}");
        if (result.Outcome == EnvironmentProvisioning.Outcome.Created)
        {
            foreach (var step in result.Applied) output.WriteLine($"    applied {step.Migration.Id} ({step.Duration.TotalMilliseconds:0} ms)");
        }
        var version = result.SchemaVersion;
        return result.Applied.Count == 0 ? $"up to date at version {version}"
            : $"applied {Plural(result.Applied.Count, "migration")}, now at version {version}";
    }

    /// <summary>
    /// workspaces bootstrap [--server name]: installs the provisioning functions and creates (or checks) the deploy login
    /// on every registered server that has an admin connection string (or the one named, which must have one).
    /// </summary>
    public async Task<Summary> BootstrapAsync(string? serverName, bool createProvisioner, TextWriter output, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        List<WorkspaceServer> selected;
        if (serverName is not null)
        {
            var server = servers.Find(serverName) ?? throw new MigrationCommandException(
                $"No workspace server '{serverName}' is registered (known: {string.Join(", ", servers.Servers.Select(s => s.Name))}).");
            if (WorkspaceServerBootstrap.AdminConnectionString(configuration, server) is null)
            {
                throw new MigrationCommandException($"Server '{server.Name}' has no admin connection string: set "
                    + $"{WorkspaceServerBootstrap.AdminKey(server)}.");
            }
            selected = [server];
        }
        else
        {
            selected = servers.Servers.Where(s => WorkspaceServerBootstrap.AdminConnectionString(configuration, s) is not null).ToList();
        }

        output.WriteLine($"workspaces bootstrap: {Plural(selected.Count, "server")}");
        var failures = new List<string>();
        foreach (var server in selected)
        {
            output.WriteLine($"  {server.Name} ({server.Provider}, {server.Identity})");
            try
            {
                var outcome = await WorkspaceServerBootstrap.RunAsync(server, WorkspaceServerBootstrap.AdminConnectionString(configuration, server)!,
                    createProvisioner, cancellationToken);
                foreach (var line in outcome.Lines) output.WriteLine($"    {line}");
                foreach (var warning in outcome.Warnings) output.WriteLine($"    warning: {warning}");
            }
            catch (Exception e) when (e is System.Data.Common.DbException or InvalidOperationException or ArgumentException or TimeoutException)
            {
                failures.Add(server.Name);
                output.WriteLine($"    FAILED: {WorkerHost.OneLine(e)}");
            }
        }
        output.WriteLine($"workspaces bootstrap: {selected.Count - failures.Count} ok, {failures.Count} failed"
            + $"{(failures.Count == 0 ? "" : $" ({string.Join(", ", failures)})")}, in {stopwatch.Elapsed.TotalSeconds:0.0} s.");
        return new Summary(selected.Count, selected.Count - failures.Count, failures.Count);
    }

    private async Task<(bool Ok, string Line)> StatusAsync(Selected item, WorkspaceTarget target, CancellationToken ct)
    {
        var schema = await databases.GetSchemaStatusAsync(target, ct, refresh: true);
        var (status, error) = WorkspaceEnvironmentState.From(schema);
        await RecordAsync(item, schema.Version, status, error);
        return schema.State switch
        {
            WorkspaceSchemaState.Current => (true, $"current at version {schema.Version}"),
            WorkspaceSchemaState.Behind => (true,
                $"behind at version {schema.Version} of {schema.ExpectedVersion}; pending: {string.Join(", ", schema.Pending)}"),
            _ => (false, schema.Problem!),
        };
    }

    private async Task<string> RevertAsync(Selected item, WorkspaceTarget target, int? toVersion, TextWriter output, CancellationToken ct)
    {
        var steps = await databases.RevertAsync(target, toVersion,
            step => output.WriteLine($"    reverted {step.Migration.Id} ({step.Duration.TotalMilliseconds:0} ms)"), ct);
        var schema = await databases.GetSchemaStatusAsync(target, ct, refresh: true);
        var (status, error) = WorkspaceEnvironmentState.From(schema);
        await RecordAsync(item, schema.Version, status, error);
        return steps.Count == 0 ? $"nothing to revert at version {schema.Version}"
            : $"reverted {Plural(steps.Count, "migration")}, now at version {schema.Version}";
    }

    private Task RecordAsync(Selected item, int? version, string status, string? error) =>
        WorkspaceEnvironmentState.RecordAsync(db, item.Environment.Id, version, status, error, clock, CancellationToken.None);

    private static string Plural(int count, string noun) => $"{count} {noun}{(count == 1 ? "" : "s")}";
}
