using System.Collections.Concurrent;
using System.Data.Common;
using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.Api.Infrastructure;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// The API over a primary and a streaming standby of it (a private cluster of this class and a
/// <c>pg_basebackup -R</c> copy on another port), with <c>ConnectionStrings:tcstudio</c> listing both hosts.
/// A test hook asks every connection the API opens whether it is in recovery, so the tests see which server
/// answered each request.
/// </summary>
public sealed class ReplicaApiFixture : ApiFixture
{
    public ReplicaApiFixture() : base(new PostgresServer())
    {
    }

    public LocalPostgresCluster? Standby { get; private set; }

    /// <summary>Request path → whether each connection opened for it was on a standby (pg_is_in_recovery()).</summary>
    public ConcurrentQueue<(string Path, bool InRecovery)> Answers { get; } = new();

    private string StandbyConnectionString =>
        new NpgsqlConnectionStringBuilder(ConnectionString) { Port = Standby!.Port, Pooling = false }.ConnectionString;

    protected override string ApiConnectionString => Standby is null ? ConnectionString
        : new NpgsqlConnectionStringBuilder(ConnectionString)
        {
            Host = $"127.0.0.1:{Server.Cluster!.Port},127.0.0.1:{Standby.Port}",
        }.ConnectionString;

    public override async ValueTask InitializeAsync()
    {
        await Server.InitializeAsync();
        await base.InitializeAsync();
    }

    protected override async Task BeforeApiStartsAsync()
    {
        if (Server.Cluster is not { } primary) return; // TCSTUDIO_TEST_POSTGRES: no cluster of ours to copy
        Standby = await primary.CreateStandbyAsync(
            Path.Combine(Path.GetTempPath(), "tcstudio-tests", "standby-" + Guid.NewGuid().ToString("N")[..12]));
        await WaitForStandbyAsync();
    }

    protected override void ConfigureServices(IServiceCollection services)
    {
        services.AddHttpContextAccessor();
        services.AddSingleton(sp => new RecoveryProbe(sp.GetRequiredService<IHttpContextAccessor>(), Answers));
        services.ConfigureDbContext<TcStudioDbContext>((sp, options) => options.AddInterceptors(sp.GetRequiredService<RecoveryProbe>()));
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (Standby is not null) await Standby.DestroyAsync();
        // The cluster of this class only (PostgresServer.DisposeAsync would also clear every pool of the process).
        if (Server.Cluster is { } primary) await primary.DestroyAsync();
        else await Server.DisposeAsync();
    }

    /// <summary>Until the standby has replayed everything the primary has written so far.</summary>
    public async Task WaitForStandbyAsync()
    {
        // The insert position, not pg_current_wal_lsn() (the write position): test clusters run with synchronous_commit
        // off, so a commit the API already answered for may still sit in WAL buffers behind the write position.
        var target = await ScalarAsync<string>("SELECT pg_current_wal_insert_lsn()::text");
        await using var standby = new NpgsqlConnection(StandbyConnectionString);
        await standby.OpenAsync();
        for (var attempt = 0; ; attempt++)
        {
            await using var command = new NpgsqlCommand("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", standby)
            {
                Parameters = { new() { Value = target } },
            };
            if (await command.ExecuteScalarAsync() is true) return;
            if (attempt > 300) throw new TimeoutException("The standby did not catch up within 30 s.");
            await Task.Delay(100);
        }
    }

    public Task StopStandbyAsync() => Standby!.StopAsync();

    /// <summary>The test hook: asks each connection the API opens which kind of server it reached.</summary>
    private sealed class RecoveryProbe(IHttpContextAccessor http, ConcurrentQueue<(string, bool)> answers) : DbConnectionInterceptor
    {
        public override async Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData,
            CancellationToken cancellationToken = default)
        {
            if (http.HttpContext?.Request.Path.Value is not { } path) return;
            await using var command = connection.CreateCommand();
            command.CommandText = "SELECT pg_is_in_recovery()";
            answers.Enqueue((path, (bool)(await command.ExecuteScalarAsync(cancellationToken))!));
        }
    }
}

public sealed class ReadReplicaRoutingTests(ReplicaApiFixture api) : IClassFixture<ReplicaApiFixture>
{
    private async Task<List<bool>> AnsweredByAsync(HttpClient client, HttpMethod method, string path, object? body = null,
        HttpStatusCode expected = HttpStatusCode.OK)
    {
        while (api.Answers.TryDequeue(out _)) { }
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonContent.Create(body);
        using var response = await client.SendAsync(request);
        Assert.Equal(expected, response.StatusCode);
        return api.Answers.Where(a => a.Path == path.Split('?')[0]).Select(a => a.InRecovery).ToList();
    }

    [Fact]
    public async Task Lists_and_activity_pages_read_the_standby_writes_and_single_reads_the_primary_which_serves_all_when_the_standby_stops()
    {
        if (api.Standby is null) Assert.Skip("Needs the test suite's private PostgreSQL cluster (TCSTUDIO_TEST_POSTGRES is set).");
        using var owner = await api.NewUserClientAsync("replica-owner");
        await owner.GetAsync("/api/me"); // the session check (always on the primary) is cached from here on

        var slug = "replica-" + Guid.NewGuid().ToString("N")[..8];
        var created = await AnsweredByAsync(owner, HttpMethod.Post, "/api/workspaces", new { name = "Replica", slug }, HttpStatusCode.Created);
        Assert.NotEmpty(created);
        Assert.All(created, inRecovery => Assert.False(inRecovery)); // the write: primary

        // Right after the write, a read of that one workspace sees it: it is read on the primary.
        var single = await AnsweredByAsync(owner, HttpMethod.Get, $"/api/workspaces/{slug}");
        Assert.NotEmpty(single);
        Assert.All(single, inRecovery => Assert.False(inRecovery));

        await api.WaitForStandbyAsync();
        foreach (var list in new[] { "/api/workspaces", $"/api/workspaces/{slug}/activities?limit=5", $"/api/workspaces/{slug}/members",
                     $"/api/workspaces/{slug}/procedures?search=x" })
        {
            var answers = await AnsweredByAsync(owner, HttpMethod.Get, list);
            Assert.NotEmpty(answers);
            Assert.All(answers, inRecovery => Assert.True(inRecovery, $"{list} was answered by the primary"));
        }
        // The pooled DbContext that served those reads is back on the primary for the next request.
        var afterwards = await AnsweredByAsync(owner, HttpMethod.Get, $"/api/workspaces/{slug}");
        Assert.NotEmpty(afterwards);
        Assert.All(afterwards, inRecovery => Assert.False(inRecovery));
        // What the standby answered is the data: the new workspace and its creation in the activity log.
        var page = await HttpAssert.ReadAsync<CursorList<TcStudio.Api.Activities.ActivityResponse>>(
            await owner.GetAsync($"/api/workspaces/{slug}/activities"));
        Assert.Contains(page.Items, item => item.Action == "workspace.created");

        // The standby goes away: the same reads are answered by the primary, without an error.
        await api.StopStandbyAsync();
        foreach (var list in new[] { "/api/workspaces", $"/api/workspaces/{slug}/activities?limit=5" })
        {
            var answers = await AnsweredByAsync(owner, HttpMethod.Get, list);
            Assert.Contains(false, answers);
            Assert.DoesNotContain(true, answers);
        }
        // And writes go on.
        Assert.All(await AnsweredByAsync(owner, HttpMethod.Patch, $"/api/workspaces/{slug}", new { name = "Still here" }),
            inRecovery => Assert.False(inRecovery));
    }

    [Fact]
    public void Every_standby_route_names_an_endpoint_of_the_api()
    {
        var endpoints = api.Factory.Services.GetRequiredService<Microsoft.AspNetCore.Routing.EndpointDataSource>().Endpoints
            .OfType<Microsoft.AspNetCore.Routing.RouteEndpoint>()
            .SelectMany(e =>
                (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? []).Select(m => ReadRouting.KeyOf(e, m)))
            .ToHashSet();
        Assert.All(ReadRouting.StandbyRoutes, route => Assert.Contains(route, endpoints));
        Assert.All(ReadRouting.StandbyRoutes, route => Assert.StartsWith("GET ", route)); // a standby takes no writes
    }
}
