using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Entities;
using TcStudio.SystemDatabase.Ssh;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.Ssh;

/// <summary>
/// The system database and a workspace server reached through an SSH tunnel to a private sshd (its own port, keys
/// and known_hosts), the one-line refusals an operator sees, and a tunnel that reopens after its bastion restarts.
/// </summary>
public sealed class SshTunnelTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>, IAsyncLifetime
{
    private TestSshServer _sshd = null!;

    public async ValueTask InitializeAsync() => _sshd = await TestSshServer.StartAsync();

    public async ValueTask DisposeAsync()
    {
        try
        {
            SshTunnels.Shared.CloseAll();
        }
        finally
        {
            await _sshd.DisposeAsync(); // never leave an sshd behind
        }
    }

    private Dictionary<string, string?> Tunnel(string section, string? privateKeyPath = null, string? knownHostsPath = null, int? port = null) =>
        new()
    {
        [$"{section}:Host"] = "127.0.0.1",
        [$"{section}:Port"] = (port ?? _sshd.Port).ToString(),
        [$"{section}:User"] = _sshd.User,
        [$"{section}:PrivateKeyPath"] = privateKeyPath ?? _sshd.ClientKeyPath,
        [$"{section}:KnownHostsPath"] = knownHostsPath ?? _sshd.KnownHostsPath,
    };

    [Fact]
    public async Task The_API_reaches_the_system_database_through_the_tunnel_and_health_lists_it()
    {
        var settings = Tunnel("Database:Ssh");
        settings["ConnectionStrings:tcstudio"] = database.ConnectionString;
        await using var api = new ObservedApiFactory(settings);
        using var client = api.CreateClient();

        var response = await client.GetAsync("/health");
        var body = await response.Content.ReadAsStringAsync();

        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        var checks = JsonDocument.Parse(body).RootElement.GetProperty("checks");
        Assert.Equal("Healthy", checks.GetProperty(SystemDatabaseHealthCheck.Name).GetProperty("status").GetString());
        Assert.Equal("Healthy", checks.GetProperty(SshTunnelHealthCheck.Name).GetProperty("status").GetString());
        Assert.Equal("1 SSH tunnel(s) up", checks.GetProperty(SshTunnelHealthCheck.Name).GetProperty("description").GetString());

        // The pool connects to the tunnel's local end, and PostgreSQL sees those sessions arrive from sshd.
        var tunnel = Assert.Single(SshTunnels.Shared.All);
        var dataSource = api.Services.GetRequiredService<NpgsqlDataSource>();
        var pool = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString);
        Assert.Equal(("127.0.0.1", tunnel.LocalPort), (pool.Host!, pool.Port));
        Assert.NotEqual(new NpgsqlConnectionStringBuilder(database.ConnectionString).Port, tunnel.LocalPort);
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM migrations", connection);
        Assert.True((long)(await command.ExecuteScalarAsync())! > 0);
    }

    [Fact]
    public async Task The_worker_runs_through_the_tunnel()
    {
        var environment = MigrationWorkerRunner.Environment(database.ConnectionString);
        foreach (var (key, value) in Tunnel("Database:Ssh")) environment[key.Replace(":", "__")] = value;

        var result = await MigrationWorkerRunner.RunAsync(environment, "status");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("applied", result.StandardOutput);
    }

    [Fact]
    public async Task A_workspace_server_is_reached_through_its_own_tunnel_and_keeps_its_identity()
    {
        var direct = database.Server.ConnectionString("postgres");
        var settings = Tunnel("WorkspaceServers:bastion:Ssh");
        // The key's text, as a secret store would hand it over, instead of a file.
        settings.Remove("WorkspaceServers:bastion:Ssh:PrivateKeyPath");
        settings["WorkspaceServers:bastion:Ssh:PrivateKey"] = await File.ReadAllTextAsync(_sshd.ClientKeyPath);
        settings["WorkspaceServers:bastion:Provider"] = "postgres";
        settings["WorkspaceServers:bastion:ConnectionString"] = direct;
        var registry = new WorkspaceServerRegistry(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());

        var server = registry.Find("bastion")!;

        Assert.Empty(registry.ConfigurationErrors);
        Assert.Empty(registry.TunnelErrors);
        var routed = new NpgsqlConnectionStringBuilder(server.ConnectionString);
        Assert.Equal("127.0.0.1", routed.Host);
        Assert.Equal(Assert.Single(SshTunnels.Shared.All, t => t.ServerName == "bastion").LocalPort, routed.Port);
        // Claims on its databases stay keyed by the server's own address, not by this process's local port.
        Assert.Equal(WorkspaceServerIdentity.Of(WorkspaceProviders.Postgres, direct), server.Identity);
        await using var connection = new NpgsqlConnection(server.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT current_database()", connection);
        Assert.Equal("postgres", await command.ExecuteScalarAsync());
    }

    [Fact]
    public async Task A_workspace_server_whose_bastion_is_down_stays_registered_says_why_and_health_is_degraded()
    {
        var settings = Tunnel("WorkspaceServers:faraway:Ssh", port: TcStudio.LocalPostgres.LocalPostgresCluster.FindFreePort());
        settings["WorkspaceServers:faraway:Provider"] = "postgres";
        settings["WorkspaceServers:faraway:ConnectionString"] = database.Server.ConnectionString("postgres");
        var registry = new WorkspaceServerRegistry(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());

        Assert.NotNull(registry.Find("faraway"));
        var line = Assert.Single(registry.TunnelErrors);
        Assert.StartsWith($"SSH tunnel WorkspaceServers:faraway:Ssh ({_sshd.User}@127.0.0.1:", line);
        Assert.Contains("connection refused", line);
        var health = await new SshTunnelHealthCheck().CheckHealthAsync(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext());
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Degraded, health.Status);
        Assert.StartsWith("SSH tunnel down: faraway", health.Description);
    }

    public static TheoryData<string> Failures => new() { "refused", "unknown host key", "wrong key", "missing key file" };

    [Theory]
    [MemberData(nameof(Failures))]
    public async Task A_tunnel_that_cannot_open_stops_the_worker_with_one_clear_line(string failure)
    {
        var emptyKnownHosts = Path.Combine(_sshd.Directory, "empty_known_hosts");
        await File.WriteAllTextAsync(emptyKnownHosts, "");
        var missingKey = Path.Combine(_sshd.Directory, "no_such_key");
        var (tunnel, expected) = failure switch
        {
            "refused" => (Tunnel("Database:Ssh", port: TcStudio.LocalPostgres.LocalPostgresCluster.FindFreePort()),
                "connection refused (no SSH server listens on 127.0.0.1:"),
            "unknown host key" => (Tunnel("Database:Ssh", knownHostsPath: emptyKnownHosts),
                $"unknown host key ssh-ed25519 SHA256:"),
            "wrong key" => (Tunnel("Database:Ssh", privateKeyPath: await _sshd.GenerateStrangerKeyAsync()),
                $"user '{_sshd.User}' was refused with the configured key"),
            _ => (Tunnel("Database:Ssh", privateKeyPath: missingKey),
                $"private key file '{missingKey}' (Database:Ssh:PrivateKeyPath) does not exist."),
        };
        var environment = MigrationWorkerRunner.Environment(database.ConnectionString);
        foreach (var (key, value) in tunnel) environment[key.Replace(":", "__")] = value;

        var result = await MigrationWorkerRunner.RunAsync(environment, "status");

        Assert.True(result.ExitCode != 0, result.ToString());
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.StartsWith($"SSH tunnel Database:Ssh ({_sshd.User}@127.0.0.1:", line);
        Assert.Contains(expected, line);
        if (failure == "unknown host key") Assert.Contains("TrustUnknownHost=true", line);
        Assert.DoesNotContain("BEGIN OPENSSH PRIVATE KEY", result.AllOutput);
    }

    [Fact]
    public async Task An_unknown_host_is_accepted_only_when_TrustUnknownHost_is_set_deliberately()
    {
        var emptyKnownHosts = Path.Combine(_sshd.Directory, "empty_known_hosts");
        await File.WriteAllTextAsync(emptyKnownHosts, "");
        var settings = Tunnel("Database:Ssh", knownHostsPath: emptyKnownHosts);
        settings["Database:Ssh:TrustUnknownHost"] = "true";
        settings["ConnectionStrings:tcstudio"] = database.ConnectionString;
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();

        Assert.Null(SystemDatabaseConnection.FindConfigurationError(configuration));
        await using var connection = new NpgsqlConnection(SystemDatabaseConnection.Build(configuration, "ssh-test").ConnectionString);
        await connection.OpenAsync();
    }

    [Fact]
    public async Task The_tunnel_reopens_after_the_bastion_restarts()
    {
        var reconnects = 0L;
        var upSeen = new List<int>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == SshTunnels.MeterName) listener.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name == "tcstudio.ssh.tunnel.reconnects") Interlocked.Add(ref reconnects, value);
        });
        meters.SetMeasurementEventCallback<int>((instrument, value, tags, _) =>
        {
            if (instrument.Name == "tcstudio.ssh.tunnel.up") lock (upSeen) upSeen.Add(value);
        });
        meters.Start();

        var settings = Tunnel("Database:Ssh");
        settings["ConnectionStrings:tcstudio"] = database.ConnectionString;
        settings["Database:Ssh:MaxReconnectDelay"] = "00:00:01";
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var connectionString = SystemDatabaseConnection.Build(configuration, "ssh-test");
        connectionString.Pooling = false;
        var tunnel = Assert.Single(SshTunnels.Shared.All);
        Assert.Equal(1, await ScalarAsync(connectionString));

        await _sshd.KillAsync();
        await WaitUntilAsync(() => !tunnel.IsUp, "the tunnel to notice the bastion is gone");
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => ScalarAsync(connectionString));
        meters.RecordObservableInstruments();
        lock (upSeen) Assert.Equal(0, upSeen[^1]);

        await _sshd.StartProcessAsync();
        await WaitUntilAsync(() => tunnel.IsUp, "the tunnel to reopen");
        Assert.Equal(1, await ScalarAsync(connectionString));
        Assert.Equal(1, tunnel.Reconnects);
        Assert.Equal(1, Interlocked.Read(ref reconnects));
        meters.RecordObservableInstruments();
        lock (upSeen) Assert.Equal(1, upSeen[^1]);
    }

    private static async Task<int> ScalarAsync(NpgsqlConnectionStringBuilder connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT 1", connection);
        return (int)(await command.ExecuteScalarAsync())!;
    }

    private async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var waited = Stopwatch.StartNew();
        while (!condition())
        {
            if (waited.Elapsed > TimeSpan.FromSeconds(60)) Assert.Fail($"Gave up waiting for {what}; sshd said: {_sshd.Log}");
            await Task.Delay(100);
        }
    }
}
