using System.Data.Common;
using Npgsql;

namespace TcStudio.Data.WorkspaceDatabases.Postgres;

/// <summary>Per-workspace pools: one NpgsqlDataSource per credential, each bounded and named after the workspace.</summary>
internal sealed class PostgresConnectionSource(WorkspaceServer server, string database, string applicationName, WorkspacesOptions options)
    : IWorkspaceConnectionSource
{
    private readonly Lock _gate = new();
    private NpgsqlDataSource? _deploy;
    private NpgsqlDataSource? _execute;

    public async Task<DbConnection> OpenAsync(WorkspaceCredential credential, CancellationToken cancellationToken) =>
        await Source(credential).OpenConnectionAsync(cancellationToken);

    private NpgsqlDataSource Source(WorkspaceCredential credential)
    {
        lock (_gate)
        {
            return credential == WorkspaceCredential.Deploy
                ? _deploy ??= Build(PostgresWorkspaceRoles.Owner(database), "deploy")
                : _execute ??= Build(PostgresWorkspaceRoles.Execute(database), "exec");
        }
    }

    private NpgsqlDataSource Build(string role, string purpose)
    {
        var builder = new NpgsqlConnectionStringBuilder(server.ConnectionString)
        {
            Database = database,
            Username = role,
            Password = PostgresWorkspaceRoles.Password(role, server, options.RoleSecret),
            ApplicationName = $"{applicationName}:{purpose}",
            Pooling = true,
            MinPoolSize = 0,
            MaxPoolSize = options.MaxPoolSize,
            Timeout = Math.Max(1, options.ConnectTimeoutSeconds),
            CommandTimeout = options.OperationTimeoutSeconds,
            ConnectionIdleLifetime = Math.Max(10, options.IdleHealthCheckSeconds),
            MaxAutoPrepare = 0,
        };
        builder.Remove("Passfile");
        // One bounded name for every workspace pool: Npgsql tags its metrics with it, and workspace names would be
        // unbounded tag values. The server still tells the pools apart by their Application Name.
        Telemetry.NpgsqlDataSources.Describe($"tcstudio-workspaces-{purpose}", builder); // for the connection log
        return new NpgsqlDataSourceBuilder(builder.ConnectionString) { Name = $"tcstudio-workspaces-{purpose}" }.Build();
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
