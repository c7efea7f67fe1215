using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// <see cref="ApiFixture"/> served by real Kestrel on a loopback port: paths arrive exactly as sent (with Kestrel's
/// own normalisation) and connections can really drop.
/// </summary>
public class KestrelApiFixture(PostgresServer server) : ApiFixture(server)
{
    // Not UseKestrel(0): on a factory made by WithWebHostBuilder the port is lost and Kestrel takes its default,
    // localhost:5000, so two such fixtures at once (or anything else on 5000) failed to start. A free loopback port.
    protected override void ConfigureFactory(WebApplicationFactory<Program> factory) =>
        factory.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));

    /// <summary>Long lock waits: tests hold locks on purpose while requests are in flight.</summary>
    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Database:LockTimeout", "00:00:30")];

    public Uri ServerAddress => new(Factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
        .First().Replace("[::]", "127.0.0.1").Replace("localhost", "127.0.0.1"));
}
