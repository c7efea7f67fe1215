using Npgsql;

namespace TcStudio.SystemDatabase;

/// <summary>
/// The system database's data sources. <c>ConnectionStrings:tcstudio</c> may list several hosts (a primary and its
/// streaming standbys: <c>Host=db1,db2,db3</c>); then one Npgsql multi-host data source serves two views of them:
/// <list type="bullet">
/// <item><see cref="Primary"/> (<c>Target Session Attributes=primary</c>): writes, reads that must see the caller's
/// own writes, migrations, everything by default. With one host, the plain data source.</item>
/// <item><see cref="Standby"/> (<c>prefer-standby</c>): the reads that tolerate a little lag (lists, search, activity
/// pages; which ones is said in one place, the API's <c>ReadRouting</c>). Npgsql falls back to the primary when no
/// standby answers (a standby that failed is skipped for <c>Host Recheck Seconds</c>, default 10 s).</item>
/// </list>
/// Both views share the per-host pools; a standby is read-only, so nothing routed to it may write.
/// </summary>
public sealed class SystemDatabaseSources : IAsyncDisposable
{
    private readonly NpgsqlDataSource _owner;

    public SystemDatabaseSources(NpgsqlDataSourceBuilder builder)
    {
        if (builder.ConnectionStringBuilder.Host?.Contains(',') != true)
        {
            _owner = builder.Build();
            Primary = Standby = _owner;
            return;
        }
        var multiHost = builder.BuildMultiHost();
        _owner = multiHost;
        Primary = multiHost.WithTargetSession(TargetSessionAttributes.Primary);
        Standby = multiHost.WithTargetSession(TargetSessionAttributes.PreferStandby);
        HasStandbys = true;
    }

    public NpgsqlDataSource Primary { get; }

    /// <summary>A standby when one answers, else the primary; the primary itself when only one host is configured.</summary>
    public NpgsqlDataSource Standby { get; }

    /// <summary>The connection string lists more than one host.</summary>
    public bool HasStandbys { get; }

    public ValueTask DisposeAsync() => _owner.DisposeAsync();
}
