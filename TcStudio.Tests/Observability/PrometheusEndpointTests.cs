using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>
/// /metrics serves the Prometheus text format on its own listener when Telemetry:Prometheus:Enabled is on (the default
/// in Development); the public port never serves it.
/// </summary>
public sealed class PrometheusEndpointTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task Metrics_exposes_the_database_instruments_in_Development()
    {
        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = database.ConnectionString,
            ["Database:SlowQueryThreshold"] = "00:00:00.050",
        });
        using var client = api.CreateClient();
        (await client.GetAsync("/test/slow/1?marker=m&seconds=0.1")).EnsureSuccessStatusCode();
        using var scraper = new HttpClient();

        var scrape = "";
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            var response = await scraper.GetAsync(api.MetricsUrl);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            scrape = await response.Content.ReadAsStringAsync();
            // The size gauge appears once the sampler's first sample (taken at start) is in.
            if (scrape.Contains("tcstudio_db_size_bytes{")) break;
            await Task.Delay(300);
        }

        Assert.Contains("tcstudio_db_query_duration_seconds_bucket{", scrape);
        Assert.Contains("tcstudio_db_slow_queries_total{", scrape);
        Assert.Contains("tcstudio_db_size_bytes{", scrape);
        Assert.Contains("db_client_connection_count{", scrape);
        Assert.Contains("db_client_operation_duration_seconds_bucket{", scrape);
        Assert.Contains("http_server_request_duration_seconds_bucket{", scrape);
    }

    [Fact]
    public async Task Metrics_is_not_served_when_turned_off()
    {
        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = database.ConnectionString,
            ["Telemetry:Prometheus:Enabled"] = "false",
        });
        using var client = api.CreateClient();

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/metrics")).StatusCode);
        Assert.Null(api.Services.GetService<TcStudio.ServiceDefaults.PrometheusScrapeListener>());
    }
}
