using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using TcStudio.LocalPostgres;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;
using TcStudio.WorkspaceDatabases.SqlServer;

namespace TcStudio.Tests.WorkspaceDatabases;

/// <summary>The connection cache on its own, against targets that fail in known ways (no database needed).</summary>
public sealed class WorkspaceConnectionCacheUnitTests : IAsyncDisposable
{
    private readonly int _closedPort = LocalPostgresCluster.FindFreePort(); // nothing listens there
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private WorkspaceConnectionCache? _cache;

    private WorkspaceConnectionCache CreateCache(WorkspacesOptions options)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["WorkspaceServers:dead:Provider"] = "postgres",
            ["WorkspaceServers:dead:ConnectionString"] = $"Host=127.0.0.1;Port={_closedPort};Username=u;Password=p;Database=maintenance",
            ["WorkspaceServers:broken:Provider"] = "oracle",
            ["WorkspaceServers:broken:ConnectionString"] = "x",
        }).Build();
        var wrapped = Options.Create(options);
        return _cache = new WorkspaceConnectionCache(new WorkspaceServerRegistry(configuration),
            [new PostgresWorkspaceProvider(wrapped), new SqlServerWorkspaceProvider(wrapped)], new ClaimedByEveryEnvironment(), wrapped,
            new WorkspaceDatabaseMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>()), TimeProvider.System,
            NullLogger<WorkspaceConnectionCache>.Instance);
    }

    private static WorkspaceTarget Target(string server, string database) => new(Guid.NewGuid(), "ws", "dev", server, database, Guid.NewGuid());

    /// <summary>These targets are never reached, so any claim will do: roles named after the environment, throwaway passwords.</summary>
    private sealed class ClaimedByEveryEnvironment : IWorkspaceOwnershipSource
    {
        public Task<WorkspaceOwnership> FindAsync(WorkspaceTarget target, WorkspaceServer server, CancellationToken cancellationToken) =>
            Task.FromResult(new WorkspaceOwnership(Guid.NewGuid(), target.WorkspaceId, target.EnvironmentId, server.Identity, target.Database,
                new WorkspaceRoleSet(PostgresWorkspaceRoles.Owner(target.EnvironmentId), "p1",
                PostgresWorkspaceRoles.Execute(target.EnvironmentId), "p2")));
    }

    [Fact]
    public async Task Unknown_servers_and_bad_or_reserved_names_are_refused_without_connecting()
    {
        var cache = CreateCache(new WorkspacesOptions());
        foreach (var (server, database) in new[] { ("elsewhere", "db"), ("broken", "db"), ("dead", "bad-name"), ("dead", "x; DROP"),
                     ("dead", "postgres"), ("dead", "maintenance"), ("dead", "template1"), ("dead", new string('a', 64)) })
        {
            var refused = await Assert.ThrowsAsync<WorkspaceTargetException>(() => cache.OpenAsync(Target(server, database),
                WorkspaceCredential.Deploy, CancellationToken.None));
            Assert.Equal("dev", refused.Environment);
            Assert.InRange(TcStudio.Api.Infrastructure.ApiExceptionHandler.StatusOf(refused), 400, 499);
        }
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public async Task A_refused_connection_is_a_503_naming_the_environment_and_a_persistently_failing_entry_is_evicted()
    {
        var cache = CreateCache(new WorkspacesOptions
        {
            RetryAttempts = 2, RetryBaseDelay = TimeSpan.FromMilliseconds(20), CircuitFailureThreshold = 100,
            EvictAfterFailing = TimeSpan.FromSeconds(1), CleanupInterval = TimeSpan.FromHours(1),
        });
        var target = Target("dead", "gone_db");
        var stopwatch = Stopwatch.StartNew();
        var failure = await Assert.ThrowsAsync<WorkspaceDatabaseUnavailableException>(() => cache.OpenAsync(target, WorkspaceCredential.Execute,
            CancellationToken.None));
        Assert.Equal("dev", failure.Environment);
        Assert.Contains("refused the connection", failure.Message);
        Assert.DoesNotContain(_closedPort.ToString(), failure.Message); // no host or port in what callers see
        Assert.True(failure.RetryAfter > TimeSpan.Zero);
        Assert.False(failure.CircuitOpen);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(3), $"{stopwatch.Elapsed}");
        Assert.True(cache.Contains(target.WorkspaceId, "dev"));
        Assert.Equal("the server refused the connection (is it running?)", cache.LastFailure(target.WorkspaceId, "dev"));

        await Task.Delay(1200, TestContext.Current.CancellationToken);
        Assert.Equal(1, cache.RemoveIdleAndFailing());
        Assert.False(cache.Contains(target.WorkspaceId, "dev"));
    }

    [Fact]
    public async Task After_repeated_failures_the_circuit_answers_at_once_with_a_retry_after()
    {
        var cache = CreateCache(new WorkspacesOptions { RetryAttempts = 0, CircuitFailureThreshold = 2, CircuitBreak = TimeSpan.FromSeconds(30) });
        var target = Target("dead", "gone_db");
        for (var i = 0; i < 2; i++)
        {
            await Assert.ThrowsAsync<WorkspaceDatabaseUnavailableException>(() => cache.OpenAsync(target, WorkspaceCredential.Deploy,
                CancellationToken.None));
        }
        var stopwatch = Stopwatch.StartNew();
        var open = await Assert.ThrowsAsync<WorkspaceDatabaseUnavailableException>(() => cache.OpenAsync(target, WorkspaceCredential.Deploy,
            CancellationToken.None));
        Assert.True(open.CircuitOpen);
        Assert.InRange(open.RetryAfter.TotalSeconds, 20, 40); // 30 s ± 20 % jitter
        Assert.True(stopwatch.ElapsedMilliseconds < 100, $"{stopwatch.ElapsedMilliseconds} ms");
        Assert.Equal("open", cache.CircuitStateOf(target.WorkspaceId, "dev"));
    }

    [Fact]
    public void Registry_reads_servers_and_reports_mistakes_by_key()
    {
        var registry = new WorkspaceServerRegistry(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:sql"] = "Server=x;User ID=a;Password=secret-1",
            ["ConnectionStrings:tcstudio"] = "Host=h;Database=tc_studio;Username=u;Password=secret-2",
            ["WorkspaceServers:sql:ExecuteConnectionString"] = "Server=x;User ID=exec;Password=secret-3",
            ["WorkspaceServers:reports:Provider"] = "POSTGRES",
            ["WorkspaceServers:reports:ConnectionString"] = "Host=r;Username=u;Password=secret-4",
            ["WorkspaceServers:bad:Provider"] = "mysql",
            ["WorkspaceServers:bad:ConnectionString"] = "Server=x",
            ["WorkspaceServers:nostring:Provider"] = "postgres",
        }).Build());
        Assert.Equal(["local:postgres", "reports:postgres", "sql:sqlserver"], registry.Servers.Select(s => $"{s.Name}:{s.Provider}"));
        Assert.Equal("sql", registry.DefaultServer!.Name);
        Assert.NotNull(registry.Find("sql")!.ExecuteConnectionString);
        Assert.Equal(2, registry.ConfigurationErrors.Count);
        Assert.All(registry.ConfigurationErrors, e => Assert.DoesNotContain("secret", e));
        Assert.DoesNotContain("secret", registry.Find("sql")!.ToString());
    }

    public async ValueTask DisposeAsync()
    {
        if (_cache is not null) await _cache.DisposeAsync();
        await _services.DisposeAsync();
    }
}
