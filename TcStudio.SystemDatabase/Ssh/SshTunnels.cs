using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace TcStudio.SystemDatabase.Ssh;

/// <summary>
/// The process's SSH tunnels, one per server entry (and target), shared by every pool and tool that reaches that
/// server: the API's data sources, the worker's verbs and the pg_dump/pg_restore they start. Process-wide rather than
/// per DI container because connection strings are built by static helpers (<see cref="SystemDatabaseConnection.Build"/>)
/// and the local endpoint must be the same for all of them.
/// Metrics (meter <c>TcStudio.Ssh</c>): <c>tcstudio.ssh.tunnel.up</c> (1 or 0 per <c>server</c>) and
/// <c>tcstudio.ssh.tunnel.reconnects</c>.
/// </summary>
public sealed class SshTunnels
{
    public const string MeterName = "TcStudio.Ssh";
    public const string SystemServerName = "system";

    /// <summary>Where workspace servers are registered (WorkspaceServers:&lt;name&gt;:…, each with an optional Ssh section).</summary>
    public const string WorkspaceServersSection = "WorkspaceServers";

    // Declared before Shared: static fields initialise in order, and its constructor uses the meter.
    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> ReconnectCounter = Meter.CreateCounter<long>(
        "tcstudio.ssh.tunnel.reconnects", unit: "{reconnect}", description: "SSH tunnels reopened after they dropped.");

    public static SshTunnels Shared { get; } = new();

    private readonly ConcurrentDictionary<string, SshTunnel> _tunnels = new(StringComparer.Ordinal);

    private SshTunnels()
    {
        Meter.CreateObservableGauge("tcstudio.ssh.tunnel.up",
            () => _tunnels.Values.Select(t => new Measurement<int>(t.IsUp ? 1 : 0, new KeyValuePair<string, object?>("server", t.ServerName))),
            unit: "{tunnel}", description: "1 while the server's SSH tunnel is open, 0 while it is down.");
    }

    /// <summary>Set by the host (<c>AddTcStudioData</c>) so tunnels log through it; read at each log line.</summary>
    public ILoggerFactory LoggerFactory { get; set; } = NullLoggerFactory.Instance;

    public IReadOnlyCollection<SshTunnel> All => _tunnels.Values.ToList();

    /// <summary>
    /// The connection string with Host and Port pointing at the server entry's tunnel when <paramref name="ssh"/> names
    /// one; unchanged otherwise. <paramref name="open"/> waits for the session (the first use, so a wrong key or host
    /// key is one line at start); otherwise it opens in the background.
    /// </summary>
    public NpgsqlConnectionStringBuilder Route(NpgsqlConnectionStringBuilder target, IConfigurationSection ssh, string serverName, bool open)
    {
        if (SshTunnelOptions.Read(ssh) is not { } options) return target;
        if (options.FindError() is { } error) throw new SshTunnelException(error);
        var host = target.Host;
        if (string.IsNullOrWhiteSpace(host) || host.Contains(',') || host.StartsWith('/'))
        {
            throw new SshTunnelException($"SSH tunnel {options.ConfigurationPath}: the connection string must name one TCP host "
                + "(the database's address as the bastion sees it), not a host list or a socket directory.");
        }
        var tunnel = Get(serverName, options, host, target.Port);
        // Only the first use waits: once the tunnel has been up, a drop is the monitor's to repair, and callers get the
        // endpoint at once (connections are refused fast meanwhile: a transient failure they already handle).
        if (open && !tunnel.HasOpened) tunnel.EnsureOpen();
        else tunnel.StartInBackground();
        return new NpgsqlConnectionStringBuilder(target.ConnectionString) { Host = "127.0.0.1", Port = tunnel.LocalPort };
    }

    /// <summary>
    /// As the PostgreSQL overload, for a SQL Server connection string: <c>Data Source=host[,port]</c> (default 1433;
    /// a named instance needs its port, since SQL Browser's UDP does not pass through a tunnel) becomes
    /// <c>tcp:127.0.0.1,&lt;local port&gt;</c>.
    /// </summary>
    public string RouteSqlServer(string connectionString, IConfigurationSection ssh, string serverName, bool open)
    {
        if (SshTunnelOptions.Read(ssh) is not { } options) return connectionString;
        if (options.FindError() is { } error) throw new SshTunnelException(error);
        var builder = new Microsoft.Data.SqlClient.SqlConnectionStringBuilder(connectionString);
        var (host, port) = SplitSqlServerDataSource(builder.DataSource)
            ?? throw new SshTunnelException($"SSH tunnel {options.ConfigurationPath}: Data Source must be host or host,port "
                + "(a named instance needs its port: SQL Browser does not pass through a tunnel).");
        var tunnel = Get(serverName, options, host, port);
        if (open && !tunnel.HasOpened) tunnel.EnsureOpen();
        else tunnel.StartInBackground();
        builder.DataSource = $"tcp:127.0.0.1,{tunnel.LocalPort}";
        return builder.ConnectionString;
    }

    internal static (string Host, int Port)? SplitSqlServerDataSource(string dataSource)
    {
        var text = dataSource.Trim();
        if (text.StartsWith("tcp:", StringComparison.OrdinalIgnoreCase)) text = text[4..];
        var comma = text.LastIndexOf(',');
        var host = comma < 0 ? text : text[..comma].Trim();
        var port = 1433;
        if (comma >= 0 && !int.TryParse(text[(comma + 1)..].Trim(), out port)) return null;
        var backslash = host.IndexOf('\\');
        if (backslash >= 0)
        {
            if (comma < 0) return null; // a named instance without a port
            host = host[..backslash];
        }
        if (host is "." or "(local)") host = "localhost";
        return host.Length == 0 || port is < 1 or > 65535 ? null : (host, port);
    }

    /// <summary>The tunnel for this entry and target, created (not yet opened) on first request.</summary>
    public SshTunnel Get(string serverName, SshTunnelOptions options, string remoteHost, int remotePort)
    {
        var key = $"{serverName}|{options.Identity}|{remoteHost}:{remotePort}";
        return _tunnels.GetOrAdd(key, _ => new SshTunnel(serverName, options, remoteHost, remotePort,
            new DeferredLogger(CreateLogger)));
    }

    private ILogger CreateLogger()
    {
        try
        {
            return LoggerFactory.CreateLogger("TcStudio.Ssh");
        }
        catch (ObjectDisposedException)
        {
            return NullLogger.Instance; // the host that owned the factory has gone
        }
    }

    /// <summary>Closes and forgets every tunnel (tests; a process otherwise keeps them until it exits).</summary>
    public void CloseAll()
    {
        foreach (var key in _tunnels.Keys)
        {
            if (_tunnels.TryRemove(key, out var tunnel)) tunnel.Dispose();
        }
    }

    internal void RecordReconnect(SshTunnel tunnel) =>
        ReconnectCounter.Add(1, new KeyValuePair<string, object?>("server", tunnel.ServerName));

    /// <summary>Resolves the logger at each call: the factory is set after the first tunnels may exist.</summary>
    private sealed class DeferredLogger(Func<ILogger> resolve) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => resolve().BeginScope(state);
        public bool IsEnabled(LogLevel logLevel) => resolve().IsEnabled(logLevel);
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            resolve().Log(logLevel, eventId, state, exception, formatter);
    }
}
