using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.HttpOverrides;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Who is calling, for per-address limits (sign-in throttle, rate limits): the TCP peer's address, or, when the peer is
/// a reverse proxy the operator listed in <c>ForwardedHeaders:KnownProxies</c> (addresses) or
/// <c>ForwardedHeaders:KnownNetworks</c> (CIDR networks), the client it names in X-Forwarded-For (the last entry not
/// added by a listed proxy). X-Forwarded-For from anyone else is ignored: a client cannot pick its own address. An
/// IPv6 client counts as its /64 network (one host usually holds a whole /64). A peer without an IP address (a Unix
/// socket, which only a local proxy can be) counts as <see cref="Unknown"/>, or, when proxies are listed, by the
/// X-Forwarded-For it sends (ASP.NET Core's rule for such peers).
/// </summary>
public static class ClientAddress
{
    public const string SectionName = "ForwardedHeaders";
    public const string Unknown = "unknown";

    public static string Of(HttpContext context)
    {
        var address = context.Connection.RemoteIpAddress;
        if (address is null) return Unknown;
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (address.AddressFamily != AddressFamily.InterNetworkV6) return address.ToString();
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes) + "/64";
    }

    /// <summary>The configured proxies and networks (each key: a list, or one comma-separated value).</summary>
    public sealed record TrustedProxies(IReadOnlyList<IPAddress> Proxies, IReadOnlyList<System.Net.IPNetwork> Networks)
    {
        public bool Any => Proxies.Count > 0 || Networks.Count > 0;
    }

    /// <summary>One line per unusable value, naming its key.</summary>
    public static IEnumerable<string> FindConfigurationErrors(IConfiguration configuration)
    {
        foreach (var proxy in Values(configuration, "KnownProxies").Where(p => !IPAddress.TryParse(p, out _)))
        {
            yield return $"{SectionName}:KnownProxies holds '{proxy}', which is not an IP address (example: 10.0.0.5).";
        }
        foreach (var network in Values(configuration, "KnownNetworks").Where(n => !System.Net.IPNetwork.TryParse(n, out _)))
        {
            yield return $"{SectionName}:KnownNetworks holds '{network}', which is not a network in CIDR notation (example: 10.0.0.0/24).";
        }
    }

    public static TrustedProxies ReadTrustedProxies(IConfiguration configuration) => new(
        Values(configuration, "KnownProxies").Select(p => IPAddress.TryParse(p, out var a) ? a : null).OfType<IPAddress>().ToList(),
        Values(configuration, "KnownNetworks")
            .Select(n => System.Net.IPNetwork.TryParse(n, out var network) ? network : (System.Net.IPNetwork?)null)
            .OfType<System.Net.IPNetwork>().ToList());

    private static IEnumerable<string> Values(IConfiguration configuration, string key)
    {
        var section = configuration.GetSection($"{SectionName}:{key}");
        return new[] { section.Value }.Concat(section.GetChildren().Select(c => c.Value))
            .SelectMany(v => (v ?? "").Split([',', ';', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    public static WebApplicationBuilder AddClientAddress(this WebApplicationBuilder builder)
    {
        var trusted = ReadTrustedProxies(builder.Configuration);
        builder.Services.Configure<ForwardedHeadersOptions>(options =>
        {
            options.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            // ASP.NET Core trusts loopback by default; here only what the operator listed is trusted.
            options.KnownProxies.Clear();
            options.KnownIPNetworks.Clear();
            foreach (var proxy in trusted.Proxies) options.KnownProxies.Add(proxy);
            foreach (var network in trusted.Networks) options.KnownIPNetworks.Add(network);
            // Walk back through X-Forwarded-For while the hop that added an entry is a listed proxy (a chain of them
            // works); the first entry added by anyone else is the client.
            options.ForwardLimit = null;
        });
        return builder;
    }

    /// <summary>
    /// Applies X-Forwarded-For and X-Forwarded-Proto from listed proxies. Without any listed, the middleware is left out
    /// entirely: with empty lists it would believe everyone.
    /// </summary>
    public static WebApplication UseTrustedForwardedHeaders(this WebApplication app)
    {
        if (ReadTrustedProxies(app.Configuration).Any) app.UseForwardedHeaders();
        return app;
    }
}
