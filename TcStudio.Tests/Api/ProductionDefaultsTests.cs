using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using TcStudio.LocalPostgres;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Api;

/// <summary>
/// What the API exposes outside Development by default: no OpenAPI document or Scalar UI, no /metrics on the public
/// port (only on the separate scrape listener), a /health that says healthy or not and nothing more (the details go
/// to the log), and HTTPS redirection and HSTS when switched on.
/// </summary>
public sealed class ProductionDefaultsTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private ObservedApiFactory Api(string environment, params (string Key, string? Value)[] settings)
    {
        var all = new Dictionary<string, string?>
        {
            ["environment"] = environment,
            ["ConnectionStrings:tcstudio"] = database.ConnectionString,
            ["Auth:SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)),
            ["Workspaces:SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
        };
        foreach (var (key, value) in settings) all[key] = value;
        return new ObservedApiFactory(all);
    }

    [Fact]
    public async Task OpenAPI_and_Scalar_are_served_in_Development_and_elsewhere_only_when_enabled()
    {
        await using (var production = Api("Production"))
        {
            using var client = production.CreateClient();
            Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/openapi/v1.json")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/scalar")).StatusCode);
        }

        await using (var enabled = Api("Production", ("Api:OpenApi:Enabled", "true")))
        {
            using var client = enabled.CreateClient();
            var document = await HttpAssert.JsonAsync(await client.GetAsync("/openapi/v1.json"));
            Assert.True(document.GetProperty("paths").TryGetProperty("/api/auth/token", out _));
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/scalar")).StatusCode);
        }

        await using (var development = Api("Development"))
        {
            using var client = development.CreateClient();
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/openapi/v1.json")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/scalar")).StatusCode);
        }
    }

    [Theory]
    [InlineData("Production")]
    [InlineData("Development")]
    public async Task Metrics_are_served_on_the_scrape_listener_and_never_on_the_public_port(string environment)
    {
        var port = LocalPostgresCluster.FindFreePort();
        await using var api = Api(environment,
            ("Telemetry:Prometheus:Enabled", "true"), ("Telemetry:Prometheus:Url", $"http://127.0.0.1:{port}"));
        using var client = api.CreateClient();
        (await client.GetAsync("/test/db")).EnsureSuccessStatusCode();

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/metrics")).StatusCode);

        using var scraper = new HttpClient();
        var scrape = await scraper.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        Assert.Contains("db_client_connection_count{", scrape);
        Assert.Equal(HttpStatusCode.NotFound, (await scraper.GetAsync($"http://127.0.0.1:{port}/api/roles")).StatusCode);
    }

    [Fact]
    public async Task A_scrape_address_that_is_taken_is_logged_naming_the_key_and_the_api_serves_on()
    {
        using var squatter = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        await using var api = Api("Production",
            ("Telemetry:Prometheus:Enabled", "true"), ("Telemetry:Prometheus:Url", $"http://127.0.0.1:{port}"));
        using var client = api.CreateClient();

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health")).StatusCode);
        Assert.Contains(api.Logs.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Error
            && e.Message.Contains("Telemetry:Prometheus:Url", StringComparison.Ordinal)
            && e.Message.Contains($"127.0.0.1:{port}", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_old_Telemetry_Prometheus_switch_still_works_and_warns_with_its_successor()
    {
        var port = LocalPostgresCluster.FindFreePort();
        await using var api = Api("Production", ("Telemetry:Prometheus", "true"), ("Telemetry:Prometheus:Url", $"http://127.0.0.1:{port}"));
        using var client = api.CreateClient();

        using var scraper = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await scraper.GetAsync($"http://127.0.0.1:{port}/metrics")).StatusCode);
        Assert.Contains(api.Logs.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning
            && e.Message.Contains("Telemetry:Prometheus:Enabled", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Health_says_only_healthy_or_not_outside_Development_and_logs_the_details()
    {
        var unmigrated = await database.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var api = Api("Production", ("ConnectionStrings:tcstudio", database.Server.ConnectionString(unmigrated)));
            using var client = api.CreateClient();

            var response = await client.GetAsync("/health");
            var body = await response.Content.ReadAsStringAsync();

            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            var json = JsonDocument.Parse(body).RootElement;
            Assert.Equal("Unhealthy", json.GetProperty("status").GetString());
            Assert.Equal(["status"], json.EnumerateObject().Select(p => p.Name));
            Assert.Contains(api.Logs.Entries, e => e.Message.Contains("migrations pending", StringComparison.Ordinal));

            var alive = JsonDocument.Parse(await client.GetStringAsync("/alive")).RootElement;
            Assert.Equal(["status"], alive.EnumerateObject().Select(p => p.Name));
        }
        finally
        {
            await database.Server.DropDatabaseAsync(unmigrated);
        }
    }

    [Fact]
    public async Task Https_redirection_and_HSTS_are_off_by_default_and_switch_on_with_their_settings()
    {
        var https = new WebApplicationFactoryClientOptions { BaseAddress = new Uri("https://tcstudio.example"), AllowAutoRedirect = false };
        var http = new WebApplicationFactoryClientOptions { BaseAddress = new Uri("http://tcstudio.example"), AllowAutoRedirect = false };

        await using (var byDefault = Api("Production"))
        {
            using var plain = byDefault.CreateClient(http);
            Assert.Equal(HttpStatusCode.Unauthorized, (await plain.GetAsync("/api/roles")).StatusCode);
            using var secure = byDefault.CreateClient(https);
            Assert.False((await secure.GetAsync("/api/roles")).Headers.Contains("Strict-Transport-Security"));
        }

        await using (var switchedOn = Api("Production", ("Api:Https:Redirect", "true"), ("Api:Https:Hsts", "true"), ("Api:Https:Port", "443")))
        {
            using var plain = switchedOn.CreateClient(http);
            var redirected = await plain.GetAsync("/api/roles?page=2");
            Assert.True(redirected.StatusCode is HttpStatusCode.TemporaryRedirect or HttpStatusCode.PermanentRedirect,
                $"got {(int)redirected.StatusCode}");
            Assert.Equal("https://tcstudio.example/api/roles?page=2", redirected.Headers.Location?.ToString());

            using var secure = switchedOn.CreateClient(https);
            var answered = await secure.GetAsync("/api/roles");
            Assert.Equal(HttpStatusCode.Unauthorized, answered.StatusCode);
            Assert.Contains("max-age=", answered.Headers.GetValues("Strict-Transport-Security").Single());
        }
    }
}

/// <summary>
/// Behind a TLS-terminating proxy the API sees plain HTTP: X-Forwarded-Proto from a configured proxy says the
/// client used HTTPS (no redirect, HSTS sent); the same header from anyone else is ignored.
/// </summary>
public sealed class ForwardedProtoTests(ForwardedProtoTests.Fixture api) : IClassFixture<ForwardedProtoTests.Fixture>
{
    public sealed class Fixture(PostgresServer server) : LoopbackApiFixture(server)
    {
        protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("ForwardedHeaders:KnownProxies", "127.0.0.2, 127.0.0.4"),
            new("Api:Https:Redirect", "true"),
            new("Api:Https:Hsts", "true"),
            new("Api:Https:Port", "443"),
        ];
    }

    [Fact]
    public async Task Https_reported_by_a_trusted_proxy_is_believed_and_from_anyone_else_is_not()
    {
        using var throughProxy = api.ClientFrom("127.0.0.4", forwardedFor: "198.51.100.5", forwardedProto: "https");
        throughProxy.DefaultRequestHeaders.Host = "tcstudio.example";
        var served = await throughProxy.GetAsync("/api/roles");
        Assert.Equal(HttpStatusCode.Unauthorized, served.StatusCode);
        Assert.True(served.Headers.Contains("Strict-Transport-Security"));

        using var direct = api.ClientFrom("127.0.0.5", forwardedProto: "https");
        direct.DefaultRequestHeaders.Host = "tcstudio.example";
        var redirected = await direct.GetAsync("/api/roles");
        Assert.Equal(HttpStatusCode.TemporaryRedirect, redirected.StatusCode);
        Assert.Equal("https://tcstudio.example/api/roles", redirected.Headers.Location?.ToString());
    }
}
