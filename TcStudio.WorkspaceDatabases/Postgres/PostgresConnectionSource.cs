using System.Data.Common;
using Npgsql;

namespace TcStudio.WorkspaceDatabases.Postgres;

/// <summary>
/// Per-environment pools: one NpgsqlDataSource per credential (the environment's owner and execute roles), each
/// bounded and named after the workspace. Every physical connection checks, before the pool hands it out, that the
/// database's marker names this environment (a physical connection initializer): a database swapped or re-created
/// under the same name, or one that is not TC Studio's, is refused (WorkspaceOwnershipException) naming both sides.
/// </summary>
internal sealed class PostgresConnectionSource(WorkspaceServer server, WorkspaceTarget target, WorkspaceOwnership ownership, string applicationName,
    WorkspacesOptions options) : IWorkspaceConnectionSource
{
    private readonly Lock _gate = new();
    private readonly WorkspaceRoleSet _roles = ownership.Roles
        ?? throw new InvalidOperationException("A PostgreSQL environment's claim carries its roles.");
    private NpgsqlDataSource? _deploy;
    private NpgsqlDataSource? _execute;

    public async Task<DbConnection> OpenAsync(WorkspaceCredential credential, CancellationToken cancellationToken)
    {
        try
        {
            return await Source(credential).OpenConnectionAsync(cancellationToken);
        }
        catch (Exception e) when (e is not WorkspaceOwnershipException && Find<WorkspaceOwnershipException>(e) is { } mismatch)
        {
            throw mismatch; // Npgsql may wrap what the initializer threw
        }
    }

    private NpgsqlDataSource Source(WorkspaceCredential credential)
    {
        lock (_gate)
        {
            return credential == WorkspaceCredential.Deploy
                ? _deploy ??= Build(_roles.OwnerRole, _roles.OwnerPassword, "deploy")
                : _execute ??= Build(_roles.ExecuteRole, _roles.ExecutePassword, "exec");
        }
    }

    private NpgsqlDataSource Build(string role, string password, string purpose)
    {
        var builder = new NpgsqlConnectionStringBuilder(server.ConnectionString)
        {
            Database = target.Database,
            Username = role,
            Password = password,
            ApplicationName = $"{applicationName}:{purpose}",
            Pooling = true,
            MinPoolSize = 0,
            MaxPoolSize = options.MaxPoolSize,
            Timeout = WorkspacesOptions.WholeSeconds(options.ConnectTimeout),
            CommandTimeout = WorkspacesOptions.WholeSeconds(options.OperationTimeout),
            ConnectionIdleLifetime = Math.Max(10, (int)options.IdleHealthCheck.TotalSeconds),
            MaxAutoPrepare = 0,
        };
        builder.Remove("Passfile");
        // One bounded name for every workspace pool: Npgsql tags its metrics with it, and workspace names would be
        // unbounded tag values. The server still tells the pools apart by their Application Name.
        DatabaseTelemetry.NpgsqlDataSources.Describe($"tcstudio-workspaces-{purpose}", builder); // for the connection log
        var dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString) { Name = $"tcstudio-workspaces-{purpose}" };
        dataSource.UsePhysicalConnectionInitializer(
            connection => VerifyMarkerAsync(connection, CancellationToken.None).GetAwaiter().GetResult(),
            connection => VerifyMarkerAsync(connection, CancellationToken.None));
        return dataSource.Build();
    }

    private async Task VerifyMarkerAsync(NpgsqlConnection connection, CancellationToken ct) =>
        WorkspaceMarker.Verify(await PostgresWorkspaceProvider.ReadMarkerAsync(connection, ct), ownership, target);

    private static T? Find<T>(Exception? exception) where T : Exception
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is T match) return match;
        }
        return null;
    }

    public void ClearPools()
    {
        lock (_gate)
        {
            _deploy?.Clear();
            _execute?.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlDataSource? deploy, execute;
        lock (_gate)
        {
            (deploy, execute) = (_deploy, _execute);
            (_deploy, _execute) = (null, null);
        }
        if (deploy is not null) await deploy.DisposeAsync();
        if (execute is not null) await execute.DisposeAsync();
    }
}
