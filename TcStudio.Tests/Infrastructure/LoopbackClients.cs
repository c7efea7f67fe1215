using System.Net;
using System.Net.Sockets;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// HttpClients that reach a Kestrel-hosted API from a chosen loopback address. Every address in 127.0.0.0/8 is this
/// machine on Linux, so one test can play several clients and reverse proxies, each seen by the server as its own
/// TCP peer (<c>HttpContext.Connection.RemoteIpAddress</c>), as it would see them in production.
/// </summary>
public static class LoopbackClients
{
    /// <param name="peer">The source address of the TCP connection, e.g. 127.0.0.2.</param>
    /// <param name="forwardedFor">An X-Forwarded-For header sent with every request, as a proxy would add it.</param>
    /// <param name="forwardedProto">An X-Forwarded-Proto header sent with every request.</param>
    public static HttpClient Create(Uri baseAddress, string peer, string? forwardedFor = null, string? forwardedProto = null)
    {
        var source = IPAddress.Parse(peer);
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(source.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    socket.Bind(new IPEndPoint(source, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        var client = new HttpClient(handler) { BaseAddress = baseAddress };
        if (forwardedFor is not null) client.DefaultRequestHeaders.Add("X-Forwarded-For", forwardedFor);
        if (forwardedProto is not null) client.DefaultRequestHeaders.Add("X-Forwarded-Proto", forwardedProto);
        return client;
    }
}

/// <summary>
/// <see cref="ApiFixture"/> on Kestrel and a real loopback socket (127.0.0.1, a free port) instead of the in-memory
/// test server, so requests carry a real peer address: what the client-address, forwarded-header and rate-limit
/// tests are about.
/// </summary>
public class LoopbackApiFixture(PostgresServer server) : ApiFixture(server)
{
    public Uri BaseAddress { get; private set; } = null!;

    protected override void ConfigureFactory(Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program> factory) =>
        factory.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        var server = Factory.Services.GetService(typeof(Microsoft.AspNetCore.Hosting.Server.IServer))
            as Microsoft.AspNetCore.Hosting.Server.IServer;
        var addresses = server!.Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses;
        BaseAddress = new Uri(addresses.Single());
    }

    /// <summary>A client connecting from <paramref name="peer"/>, optionally sending forwarded headers.</summary>
    public HttpClient ClientFrom(string peer, string? forwardedFor = null, string? forwardedProto = null) =>
        LoopbackClients.Create(BaseAddress, peer, forwardedFor, forwardedProto);
}
