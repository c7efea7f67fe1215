using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace TcStudio.SystemDatabase.Ssh;

/// <summary>
/// <c>/health</c> entry <c>ssh-tunnels</c>: one line per tunnel, no keys. The system database's tunnel down is
/// Unhealthy (nothing works without it); a workspace server's is Degraded, since one dead workspace server must not
/// take the service out of rotation. Healthy, saying so, when no tunnel is configured.
/// </summary>
public sealed class SshTunnelHealthCheck : IHealthCheck
{
    public const string Name = "ssh-tunnels";

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var tunnels = SshTunnels.Shared.All.OrderBy(t => t.ServerName, StringComparer.Ordinal).ToList();
        if (tunnels.Count == 0) return Task.FromResult(HealthCheckResult.Healthy("no SSH tunnels configured"));
        var data = tunnels.ToDictionary(t => t.ServerName, t => (object)(t.IsUp ? "up" : "down"));
        var down = tunnels.Where(t => !t.IsUp).ToList();
        if (down.Count == 0) return Task.FromResult(HealthCheckResult.Healthy($"{tunnels.Count} SSH tunnel(s) up", data));
        // Server names and ports only: /health is reachable without credentials.
        var description = $"SSH tunnel down: {string.Join(", ", down.Select(t => t.ServerName))} "
            + $"(reconnects so far: {down.Sum(t => t.Reconnects)})";
        return Task.FromResult(down.Any(t => t.ServerName == SshTunnels.SystemServerName)
            ? HealthCheckResult.Unhealthy(description, data: data)
            : HealthCheckResult.Degraded(description, data: data));
    }
}

/// <summary>Points the process-wide tunnels' logs at the host's logging once it starts.</summary>
internal sealed class SshTunnelLogging(Microsoft.Extensions.Logging.ILoggerFactory loggerFactory) : Microsoft.Extensions.Hosting.IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        SshTunnels.Shared.LoggerFactory = loggerFactory;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        // Tunnels outlive hosts (tests run several in one process); a stopped host's factory is disposed next.
        if (ReferenceEquals(SshTunnels.Shared.LoggerFactory, loggerFactory))
        {
            SshTunnels.Shared.LoggerFactory = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
        }
        return Task.CompletedTask;
    }
}
