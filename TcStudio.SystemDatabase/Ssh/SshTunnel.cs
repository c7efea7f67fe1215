using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Renci.SshNet;
using Renci.SshNet.Common;

namespace TcStudio.SystemDatabase.Ssh;

/// <summary>
/// One local port forward, <c>127.0.0.1:&lt;LocalPort&gt;</c> → (via the bastion) the database's host and port, shared by
/// every pool of the server entry that configured it. The local port is chosen once and kept for the life of the
/// process, so connection strings rewritten to it stay valid across reconnects: while the session is down nothing
/// listens there and a connection attempt is refused at once (a transient error the callers already retry), and a
/// monitor reopens the session with exponential backoff and jitter. The bastion's host key is checked against
/// known_hosts on every (re)connect.
/// </summary>
public sealed class SshTunnel : IDisposable
{
    private static readonly TimeSpan MonitorInterval = TimeSpan.FromMilliseconds(500);

    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILogger _logger;
    private SshClient? _client;
    private ForwardedPortLocal? _forward;
    private Task? _monitor;
    private string? _hostKeyRejection;
    private long _reconnects;
    private volatile bool _everOpened;

    internal SshTunnel(string serverName, SshTunnelOptions options, string remoteHost, int remotePort, ILogger logger)
    {
        ServerName = serverName;
        Options = options;
        RemoteHost = remoteHost;
        RemotePort = remotePort;
        _logger = logger;
        LocalPort = ReserveLocalPort();
    }

    /// <summary>The server entry's name (<c>system</c> for the system database): the metric and health tag.</summary>
    public string ServerName { get; }

    public SshTunnelOptions Options { get; }
    public string RemoteHost { get; }
    public int RemotePort { get; }
    public int LocalPort { get; }

    public bool IsUp
    {
        get
        {
            var client = _client;
            var forward = _forward;
            return client is { IsConnected: true } && forward is { IsStarted: true };
        }
    }

    public long Reconnects => Interlocked.Read(ref _reconnects);

    /// <summary>True once the session has been open (it may be down now, being reopened).</summary>
    public bool HasOpened => _everOpened;

    /// <summary>The last failure's one-line reason (no secrets), or null after a successful (re)open.</summary>
    public string? LastError { get; private set; }

    /// <summary>Where the tunnel leads, for logs and health: names and ports, never keys.</summary>
    public string Describe() =>
        $"{Options.User}@{Options.Host}:{Options.Port} → {RemoteHost}:{RemotePort} on 127.0.0.1:{LocalPort}";

    /// <summary>
    /// Opens the session now if it is not up (the first use waits for it; a failure is one line in an
    /// <see cref="SshTunnelException"/>), and starts the monitor that keeps it up.
    /// </summary>
    public void EnsureOpen()
    {
        try
        {
            lock (_gate)
            {
                if (IsUp) return;
                Connect();
                _everOpened = true;
            }
        }
        finally
        {
            StartMonitor();
        }
    }

    /// <summary>Starts the monitor without waiting: the session opens in the background (workspace servers).</summary>
    public void StartInBackground() => StartMonitor();

    /// <summary>Closes the session (tests simulate a drop this way too); the monitor, if running, reopens it.</summary>
    internal void Drop()
    {
        lock (_gate) TearDown();
    }

    private void StartMonitor()
    {
        lock (_gate)
        {
            if (_monitor is not null || _stopping.IsCancellationRequested) return;
            _monitor = Task.Run(() => MonitorAsync(_stopping.Token));
        }
    }

    private async Task MonitorAsync(CancellationToken stopping)
    {
        var failures = 0;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(MonitorInterval, stopping);
                if (IsUp) continue;
                if (failures == 0 && _everOpened)
                {
                    _logger.LogWarning("SSH tunnel {Path} ({Tunnel}) dropped; reopening", Options.ConfigurationPath, Describe());
                }
                lock (_gate)
                {
                    if (IsUp) continue;
                    Connect();
                }
                if (_everOpened)
                {
                    Interlocked.Increment(ref _reconnects);
                    SshTunnels.Shared.RecordReconnect(this);
                    _logger.LogInformation("SSH tunnel {Path} reopened ({Tunnel}) after {Failures} failed attempt(s)",
                        Options.ConfigurationPath, Describe(), failures);
                }
                else
                {
                    _logger.LogInformation("SSH tunnel {Path} open ({Tunnel})", Options.ConfigurationPath, Describe());
                }
                _everOpened = true;
                failures = 0;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SshTunnelException e)
            {
                failures++;
                var delay = ReconnectDelay(failures);
                _logger.LogWarning("{Reason} Retrying in {Delay:0.0} s.", e.Message, delay.TotalSeconds);
                try
                {
                    await Task.Delay(delay, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private TimeSpan ReconnectDelay(int failures)
    {
        var exponential = TimeSpan.FromMilliseconds(500 * Math.Pow(2, Math.Min(failures - 1, 16)));
        var capped = exponential < Options.MaxReconnectDelay ? exponential : Options.MaxReconnectDelay;
        return capped * (0.8 + 0.4 * Random.Shared.NextDouble());
    }

    /// <summary>Called under the gate.</summary>
    private void Connect()
    {
        TearDown();
        var prefix = $"SSH tunnel {Options.ConfigurationPath} ({Options.User}@{Options.Host}:{Options.Port}):";
        var key = LoadKey(prefix);
        var connection = new ConnectionInfo(Options.Host, Options.Port, Options.User, new PrivateKeyAuthenticationMethod(Options.User, key))
        {
            Timeout = Options.ConnectTimeout,
        };
        var client = new SshClient(connection) { KeepAliveInterval = Options.KeepAliveInterval };
        _hostKeyRejection = null;
        client.HostKeyReceived += (_, e) => e.CanTrust = TrustHostKey(e, prefix);
        try
        {
            client.Connect();
        }
        catch (Exception e) when (e is SocketException or SshException or ProxyException or TimeoutException or IOException)
        {
            client.Dispose();
            throw Fail(Explain(e, prefix), e);
        }

        var forward = new ForwardedPortLocal(IPAddress.Loopback.ToString(), (uint)LocalPort, RemoteHost, (uint)RemotePort);
        forward.Exception += (_, e) =>
            _logger.LogDebug("SSH tunnel {Path}: a forwarded connection failed: {Reason}", Options.ConfigurationPath, e.Exception.Message);
        try
        {
            client.AddForwardedPort(forward);
            forward.Start();
        }
        catch (Exception e) when (e is SocketException or SshException)
        {
            forward.Dispose();
            client.Dispose();
            throw Fail($"{prefix} could not listen on 127.0.0.1:{LocalPort} for the forward ({e.Message}).", e);
        }
        _client = client;
        _forward = forward;
        LastError = null;
    }

    private SshTunnelException Fail(string message, Exception? inner = null)
    {
        LastError = message;
        return new SshTunnelException(message, inner);
    }

    private PrivateKeyFile LoadKey(string prefix)
    {
        var passphrase = string.IsNullOrEmpty(Options.PrivateKeyPassphrase) ? null : Options.PrivateKeyPassphrase;
        try
        {
            if (!string.IsNullOrWhiteSpace(Options.PrivateKey))
            {
                using var text = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(Options.PrivateKey.Replace("\\n", "\n")));
                return new PrivateKeyFile(text, passphrase);
            }
            var path = Options.PrivateKeyPath!;
            if (!File.Exists(path))
            {
                throw Fail($"{prefix} private key file '{path}' ({Options.ConfigurationPath}:PrivateKeyPath) does not exist.");
            }
            return new PrivateKeyFile(path, passphrase);
        }
        catch (Exception e) when (e is SshException or ArgumentException or InvalidOperationException or NotSupportedException
            or FormatException or UnauthorizedAccessException or IOException)
        {
            var source = string.IsNullOrWhiteSpace(Options.PrivateKey)
                ? $"file '{Options.PrivateKeyPath}'" : $"{Options.ConfigurationPath}:PrivateKey";
            throw Fail($"{prefix} the private key ({source}) could not be read: {FirstLine(e.Message)} "
                + "(an OpenSSH or PEM key is expected; set PrivateKeyPassphrase if it is encrypted).", e);
        }
    }

    private bool TrustHostKey(HostKeyEventArgs e, string prefix)
    {
        var knownHosts = Options.EffectiveKnownHostsPath;
        var fingerprint = KnownHosts.Fingerprint(e.HostKey);
        var verdict = KnownHosts.Check(knownHosts, Options.Host, Options.Port, e.HostKey);
        switch (verdict)
        {
            case KnownHosts.Verdict.Known:
                return true;
            case KnownHosts.Verdict.Unknown when Options.TrustUnknownHost:
                _logger.LogWarning("SSH tunnel {Path}: host key {KeyType} {Fingerprint} of {Host}:{Port} is not in known_hosts; "
                    + "trusted because TrustUnknownHost is set", Options.ConfigurationPath, e.HostKeyName, fingerprint, Options.Host, Options.Port);
                return true;
            case KnownHosts.Verdict.Unknown:
                _hostKeyRejection = $"{prefix} unknown host key {e.HostKeyName} {fingerprint}: it is not in '{knownHosts}' "
                    + $"(add it, e.g. ssh-keyscan -p {Options.Port} {Options.Host} >> {knownHosts}, after checking the fingerprint; "
                    + $"or set {Options.ConfigurationPath}:TrustUnknownHost=true deliberately).";
                return false;
            case KnownHosts.Verdict.Revoked:
                _hostKeyRejection = $"{prefix} host key {e.HostKeyName} {fingerprint} is marked @revoked in '{knownHosts}'; refused.";
                return false;
            default:
                _hostKeyRejection = $"{prefix} HOST KEY CHANGED: {e.HostKeyName} {fingerprint} does not match the key '{knownHosts}' "
                    + "holds for this host (someone may be intercepting the connection); refused.";
                return false;
        }
    }

    private string Explain(Exception e, string prefix)
    {
        if (_hostKeyRejection is { } rejected) return rejected;
        var socket = e as SocketException ?? e.InnerException as SocketException;
        return socket?.SocketErrorCode switch
        {
            SocketError.ConnectionRefused => $"{prefix} connection refused (no SSH server listens on {Options.Host}:{Options.Port}).",
            SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData => $"{prefix} host '{Options.Host}' not found.",
            SocketError.TimedOut => $"{prefix} no answer within {Options.ConnectTimeout.TotalSeconds:0.#} s.",
            not null => $"{prefix} could not connect ({socket.SocketErrorCode}).",
            _ => e switch
            {
                SshAuthenticationException => $"{prefix} user '{Options.User}' was refused with the configured key "
                    + "("
                    + (string.IsNullOrWhiteSpace(Options.PrivateKey) ? $"'{Options.PrivateKeyPath}'" : $"{Options.ConfigurationPath}:PrivateKey")
                    + "): the key is not in that user's authorized_keys on the bastion.",
                SshOperationTimeoutException or TimeoutException => $"{prefix} no answer within {Options.ConnectTimeout.TotalSeconds:0.#} s.",
                SshConnectionException c => $"{prefix} the server closed the connection ({FirstLine(c.Message)}).",
                _ => $"{prefix} {FirstLine(e.Message)}",
            },
        };
    }

    private static string FirstLine(string text) => text.Split('\n')[0].Trim().TrimEnd('.');

    /// <summary>Called under the gate.</summary>
    private void TearDown()
    {
        var forward = _forward;
        var client = _client;
        _forward = null;
        _client = null;
        try
        {
            forward?.Stop();
        }
        catch (Exception e) when (e is SshException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            // The session is already gone; the listener is closed either way.
        }
        forward?.Dispose();
        try
        {
            client?.Dispose();
        }
        catch (Exception e) when (e is SshException or SocketException or ObjectDisposedException)
        {
            // Disposing a dead session may complain; there is nothing left to close.
        }
    }

    private static int ReserveLocalPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public void Dispose()
    {
        _stopping.Cancel();
        lock (_gate) TearDown();
        try
        {
            _monitor?.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
            // The monitor ends by cancellation.
        }
        _stopping.Dispose();
    }
}
