using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TcStudio.AppHost;

/// <summary>
/// A project whose endpoint has a fixed port (the API's 5025 from its launch profile) fails to start, with one line
/// naming the port, when another process already listens there. Without the check DCP's proxy cannot bind the port,
/// the project still starts on its own random port, and the health check on the fixed port reaches the other
/// process: a healthy status for someone else's server.
/// </summary>
public static class FixedPortCheck
{
    /// <summary>Set by Aspire.Hosting.Testing: every endpoint then gets a random port, and a fixed one is never bound.</summary>
    public const string RandomizePortsKey = "DcpPublisher:RandomizePorts";

    public static IResourceBuilder<ProjectResource> FailWhenAFixedPortIsTaken(
        this IResourceBuilder<ProjectResource> project, IDistributedApplicationBuilder builder)
    {
        if (!builder.ExecutionContext.IsRunMode) return project;
        // Checked before DCP starts anything: from then on DCP's own proxy holds the port, and a port it could not
        // bind is not reported anywhere.
        var taken = new List<(EndpointAnnotation Endpoint, int Port)>();
        builder.Eventing.Subscribe<BeforeStartEvent>((_, _) =>
        {
            if (builder.Configuration.GetValue<bool>(RandomizePortsKey)) return Task.CompletedTask;
            foreach (var endpoint in project.Resource.Annotations.OfType<EndpointAnnotation>())
            {
                if (endpoint.Port is int port && !IsFree(port)) taken.Add((endpoint, port));
            }
            return Task.CompletedTask;
        });
        builder.Eventing.Subscribe<BeforeResourceStartedEvent>(project.Resource, (started, _) =>
        {
            if (taken.Count == 0) return Task.CompletedTask;
            var (endpoint, port) = taken[0];
            var message = $"port {port} is in use by another process (endpoint '{endpoint.Name}'): stop that process "
                + $"(ss -ltnp 'sport = :{port}' shows it) and start again.";
            started.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TcStudio.AppHost")
                .LogError("{Resource} cannot start: {Message}", project.Resource.Name, message);
            throw new PortInUseException(message);
        });
        return project;
    }

    /// <summary>True when nothing listens on the port on the loopback (IPv4, and IPv6 where there is one).</summary>
    public static bool IsFree(int port)
    {
        foreach (var address in Socket.OSSupportsIPv6 ? [IPAddress.Loopback, IPAddress.IPv6Loopback] : new[] { IPAddress.Loopback })
        {
            var listener = new TcpListener(address, port);
            try
            {
                listener.Start();
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AccessDenied)
            {
                return false;
            }
            catch (SocketException)
            {
                continue; // no such address family here (an IPv6-less container)
            }
            finally
            {
                listener.Stop();
            }
        }
        return true;
    }
}

/// <summary>The reason is the whole story: the resource log shows the message, not a stack trace.</summary>
public sealed class PortInUseException(string message) : Exception(message)
{
    public override string ToString() => Message;
}
