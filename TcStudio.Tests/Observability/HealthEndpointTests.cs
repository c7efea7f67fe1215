using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>/health and /alive of the real API, against a database that is up, down, or not migrated yet.</summary>
public sealed class HealthEndpointTests(EmptyDatabaseFixture unmigrated) : IClassFixture<EmptyDatabaseFixture>
{
    [Fact]
    public async Task Health_turns_503_within_seconds_when_PostgreSQL_stops_and_200_when_it_returns_while_alive_stays_200()
    {
        // A cluster of this test's own: stopping the shared one would break every other test.
        var cluster = await PostgresServer.StartPrivateClusterAsync(port: LocalPostgresCluster.FindFreePort());
        try
        {
            await using (var admin = new Npgsql.NpgsqlConnection(cluster.ConnectionString()))
            {
                await admin.OpenAsync();
                await using var create = new Npgsql.NpgsqlCommand("CREATE DATABASE tc_studio", admin);
                await create.ExecuteNonQueryAsync();
            }
            var connectionString = cluster.ConnectionString("tc_studio");
            await DataHost.MigrateAsync(connectionString);

            await using var api = new ObservedApiFactory(new Dictionary<string, string?>
            {
                ["ConnectionStrings:tcstudio"] = connectionString,
                ["Database:HealthCheckTimeout"] = "00:00:02",
            });
            using var client = api.CreateClient();

            var up = await WaitForStatusAsync(client, "/health", HttpStatusCode.OK, TimeSpan.FromSeconds(15));
            Assert.Equal("Healthy", await StatusOfCheckAsync(up, SystemDatabaseHealthCheck.Name));

            await cluster.StopAsync();
            var stopped = Stopwatch.StartNew();
            var down = await WaitForStatusAsync(client, "/health", HttpStatusCode.ServiceUnavailable, TimeSpan.FromSeconds(10));
            Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(10), $"took {stopped.Elapsed}");
            Assert.Equal("Unhealthy", await StatusOfCheckAsync(down, SystemDatabaseHealthCheck.Name));
            Assert.DoesNotContain(cluster.Password, down);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/alive")).StatusCode);
            // One more check while it is down: a fresh physical connection is attempted and fails (logged below).
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync("/health")).StatusCode);

            await cluster.StartAsync();
            await WaitForStatusAsync(client, "/health", HttpStatusCode.OK, TimeSpan.FromSeconds(20));
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/alive")).StatusCode);

            // The connection failures while it was down were logged with where, never the password.
            var connectionLogs = api.Logs.Entries.Where(e => e.Category == "TcStudio.Database.Connections").ToList();
            Assert.Contains(connectionLogs, e => e.Message.StartsWith("Could not open a connection to PostgreSQL at 127.0.0.1:"
                + cluster.Port + "/tc_studio as postgres", StringComparison.Ordinal));
            Assert.Contains(connectionLogs, e => e.Message.StartsWith("Opened a connection to PostgreSQL at 127.0.0.1:"
                + cluster.Port + "/tc_studio as postgres", StringComparison.Ordinal));
            Assert.DoesNotContain(api.Logs.Entries, e => e.Message.Contains(cluster.Password));
        }
        finally
        {
            await cluster.DestroyAsync();
        }
    }

    [Fact]
    public async Task Pending_migrations_make_health_503_and_say_how_many()
    {
        int migrations;
        await using (var db = unmigrated.CreateDbContext()) migrations = db.Database.GetMigrations().Count();

        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = unmigrated.ConnectionString,
        });
        using var client = api.CreateClient();

        var response = await client.GetAsync("/health");
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal($"migrations pending: {migrations}", DescriptionOfCheck(body, SystemDatabaseHealthCheck.Name));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/alive")).StatusCode);
    }

    [Fact]
    public async Task DisableHealthChecks_leaves_the_database_out_of_health()
    {
        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            // The API waits for its database at start, so it gets a real one; the point is that /health leaves it out.
            ["ConnectionStrings:tcstudio"] = unmigrated.ConnectionString,
            [SystemDatabaseConnection.AspireSettingsSection + ":DisableHealthChecks"] = "true",
        });
        using var client = api.CreateClient();

        var response = await client.GetAsync("/health");
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.DoesNotContain(SystemDatabaseHealthCheck.Name, body);
    }

    private static async Task<string> WaitForStatusAsync(HttpClient client, string path, HttpStatusCode expected, TimeSpan within)
    {
        var deadline = Stopwatch.StartNew();
        var last = "";
        while (true)
        {
            var response = await client.GetAsync(path);
            last = await response.Content.ReadAsStringAsync();
            if (response.StatusCode == expected) return last;
            if (deadline.Elapsed > within)
            {
                Assert.Fail($"{path} did not answer {(int)expected} within {within.TotalSeconds} s; last: {(int)response.StatusCode} {last}");
            }
            await Task.Delay(250);
        }
    }

    private static Task<string?> StatusOfCheckAsync(string body, string check) =>
        Task.FromResult(JsonDocument.Parse(body).RootElement.GetProperty("checks").GetProperty(check).GetProperty("status").GetString());

    private static string? DescriptionOfCheck(string body, string check) =>
        JsonDocument.Parse(body).RootElement.GetProperty("checks").GetProperty(check).GetProperty("description").GetString();
}
