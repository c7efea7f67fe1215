using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using TcStudio.DatabaseTelemetry;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>Three private clusters: TLS with the default names, TLS for another host name only, and no TLS.</summary>
public sealed class TlsClusters : IAsyncLifetime
{
    public const string OtherHostName = "db.tcstudio.test";

    public LocalPostgresCluster Verified { get; private set; } = null!;
    public LocalPostgresCluster OtherName { get; private set; } = null!;
    public LocalPostgresCluster Plain { get; private set; } = null!;

    /// <summary>A CA of its own, which signed nothing any of these servers present.</summary>
    public LocalPostgresTls OtherCa { get; } = new(Path.Combine(Path.GetTempPath(), "tcstudio-tests",
        "other-ca-" + Guid.NewGuid().ToString("N")[..8]));

    public async ValueTask InitializeAsync()
    {
        OtherCa.Ensure(LocalPostgresTls.DefaultHostNames, DateTimeOffset.UtcNow);
        Verified = await PostgresServer.StartPrivateClusterAsync();
        Plain = await PostgresServer.StartPrivateClusterAsync(tls: false);
        OtherName = new LocalPostgresCluster(new LocalPostgresOptions
        {
            StateDirectory = Path.Combine(Path.GetTempPath(), "tcstudio-tests", Guid.NewGuid().ToString("N")[..12]),
            Durable = false,
            TlsHostNames = [OtherHostName],
        });
        await OtherName.StartAsync();
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await Verified.DestroyAsync();
        await OtherName.DestroyAsync();
        await Plain.DestroyAsync();
        Directory.Delete(Path.GetDirectoryName(OtherCa.Directory)!, recursive: true);
    }
}

/// <summary>
/// TLS to PostgreSQL: the local cluster's own CA verifies it (VerifyFull) without being trusted machine-wide; a wrong
/// CA, a wrong host name and a server without TLS each fail with the one line a user reads (the worker's and API's
/// start-up check, the connection log), never with the password.
/// </summary>
public sealed class PostgresTlsTests(TlsClusters clusters) : IClassFixture<TlsClusters>
{
    private const string WrongPassword = "tls-test-never-logged";

    [Fact]
    public async Task VerifyFull_with_the_clusters_CA_connects_over_TLS_and_the_CA_is_trusted_nowhere_else()
    {
        var cluster = clusters.Verified;
        var settings = new NpgsqlConnectionStringBuilder(cluster.ConnectionString());
        Assert.Equal(SslMode.VerifyFull, settings.SslMode);
        Assert.Equal(cluster.TlsFiles.CaCertificateFile, settings.RootCertificate);

        await using (var connection = new NpgsqlConnection(settings.ConnectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", connection);
            Assert.Equal(true, await command.ExecuteScalarAsync());
        }

        // Without Root Certificate the same server is refused: its CA is in no trust store of this machine.
        using var ca = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(cluster.TlsFiles.CaCertificateFile));
        foreach (var location in new[] { StoreLocation.CurrentUser, StoreLocation.LocalMachine })
        {
            using var store = new X509Store(StoreName.Root, location);
            try
            {
                store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly);
            }
            catch (System.Security.Cryptography.CryptographicException)
            {
                continue; // no such store on this machine: nothing was installed into it either
            }
            Assert.DoesNotContain(store.Certificates.Cast<X509Certificate2>(), c => c.Thumbprint == ca.Thumbprint);
        }
        var failure = await StartupFailureAsync(new NpgsqlConnectionStringBuilder(settings.ConnectionString) { RootCertificate = null });
        Assert.Contains("is not signed by a CA this machine trusts (SSL Mode=VerifyFull); pass the server's CA as Root Certificate=<file>", failure);
    }

    [Fact]
    public async Task The_worker_refuses_a_server_signed_by_another_CA_with_one_line_naming_the_CA_file()
    {
        var connectionString = new NpgsqlConnectionStringBuilder(clusters.Verified.ConnectionString("tls_worker"))
        {
            RootCertificate = clusters.OtherCa.CaCertificateFile,
        }.ConnectionString;

        var result = await MigrationWorkerRunner.RunAsync(connectionString, "migrate");

        Assert.NotEqual(0, result.ExitCode);
        var line = Assert.Single(result.StandardError.Split('\n'), l => l.StartsWith("migrate failed: ", StringComparison.Ordinal));
        Assert.Contains($"PostgreSQL at 127.0.0.1:{clusters.Verified.Port}/tls_worker as postgres: TLS failed: "
            + "the server's certificate (CN=localhost, issued by CN=TC Studio local PostgreSQL CA", line);
        Assert.Contains($"is not signed by the CA in Root Certificate {clusters.OtherCa.CaCertificateFile} (SSL Mode=VerifyFull)", line);
        Assert.DoesNotContain(clusters.Verified.Password, result.StandardOutput + result.StandardError);
    }

    [Fact]
    public async Task A_certificate_for_another_host_name_fails_VerifyFull_with_one_line_and_VerifyCA_accepts_it()
    {
        var cluster = clusters.OtherName;
        var settings = new NpgsqlConnectionStringBuilder(cluster.ConnectionString());

        var failure = await StartupFailureAsync(settings);

        Assert.Equal(
            $"PostgreSQL at 127.0.0.1:{cluster.Port}/postgres as postgres: TLS failed: the server's certificate (CN={TlsClusters.OtherHostName}, "
            + $"issued by {CaSubject(cluster)}) is not issued for the host name '127.0.0.1' but for '{TlsClusters.OtherHostName}' "
            + "(SSL Mode=VerifyFull checks the name: connect by one of those names)", failure);

        // The same CA without the name check connects: what failed above was the name alone.
        await using var connection = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(settings.ConnectionString) { SslMode = SslMode.VerifyCA }.ConnectionString);
        await connection.OpenAsync();
    }

    [Fact]
    public async Task Require_against_a_server_without_TLS_is_refused_and_Prefer_falls_back_to_plain()
    {
        var cluster = clusters.Plain;
        var required = new NpgsqlConnectionStringBuilder(cluster.ConnectionString()) { SslMode = SslMode.Require };

        await using (var connection = new NpgsqlConnection(required.ConnectionString))
        {
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => connection.OpenAsync());
        }
        var failure = await StartupFailureAsync(required);
        Assert.Equal($"PostgreSQL at 127.0.0.1:{cluster.Port}/postgres as postgres: TLS failed: the server does not accept TLS "
            + "connections and SSL Mode=Require requires TLS "
            + "(turn ssl on at the server; Database:SslMode=Prefer or Disable only on a network you trust)",
            failure);

        await using (var connection = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(required.ConnectionString) { SslMode = SslMode.Prefer }.ConnectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", connection);
            Assert.Equal(false, await command.ExecuteScalarAsync());
        }
    }

    [Fact]
    public async Task The_connection_log_names_a_TLS_failure_with_where_and_as_whom_and_never_the_password()
    {
        var cluster = clusters.Verified;
        var connectionString = new NpgsqlConnectionStringBuilder(cluster.ConnectionString("tls_log"))
        {
            RootCertificate = clusters.OtherCa.CaCertificateFile,
            Password = WrongPassword,
        }.ConnectionString;
        var logs = new LogSink();
        using var host = DataHost.Build(connectionString, logs);
        host.Services.GetRequiredService<NpgsqlActivityMonitor>().Start();

        await Assert.ThrowsAsync<DatabaseUnavailableException>(() => SystemDatabaseStartup.WaitUntilReachableAsync(
            host.Services.GetRequiredService<IConfiguration>(), NullLogger.Instance, databaseMayBeMissing: false, CancellationToken.None));

        var where = $"127.0.0.1:{cluster.Port}/tls_log as postgres";
        Assert.Contains(logs.Entries, e => e.Category == "TcStudio.Database.Connections" && e.Message.StartsWith(
            $"Could not open a connection to PostgreSQL at {where}: TLS: the server's certificate failed verification", StringComparison.Ordinal));
        Assert.DoesNotContain(logs.Entries, e => e.Message.Contains(WrongPassword, StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_cluster_logs_every_connection_attempt_and_never_the_password()
    {
        var cluster = clusters.Verified;
        var wrong = new NpgsqlConnectionStringBuilder(cluster.ConnectionString()) { Password = WrongPassword, Pooling = false };
        await using (var connection = new NpgsqlConnection(wrong.ConnectionString))
        {
            var refused = await Assert.ThrowsAsync<PostgresException>(() => connection.OpenAsync());
            Assert.Equal(PostgresErrorCodes.InvalidPassword, refused.SqlState);
        }
        await using (var connection = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(cluster.ConnectionString()) { Pooling = false, ApplicationName = "tls-log-test" }.ConnectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SHOW log_connections", connection);
            Assert.Equal("on", await command.ExecuteScalarAsync());
        }

        var log = await File.ReadAllTextAsync(cluster.LogFile);
        Assert.Contains("connection authorized: user=postgres database=postgres application_name=tls-log-test SSL enabled", log);
        Assert.Contains("password authentication failed for user \"postgres\"", log);
        Assert.DoesNotContain(WrongPassword, log);
        Assert.DoesNotContain(cluster.Password, log);
    }

    private static string CaSubject(LocalPostgresCluster cluster)
    {
        using var ca = X509Certificate2.CreateFromPem(File.ReadAllText(cluster.TlsFiles.CaCertificateFile));
        return ca.Subject;
    }

    /// <summary>The one line the API and the worker print when the start-up check gives up.</summary>
    private static async Task<string> StartupFailureAsync(NpgsqlConnectionStringBuilder settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            [SystemDatabaseConnection.ConnectionStringKey] = settings.ConnectionString,
            ["Database:StartupTimeout"] = "00:00:30",
        }).Build();
        var failure = await Assert.ThrowsAsync<DatabaseUnavailableException>(() => SystemDatabaseStartup.WaitUntilReachableAsync(
            configuration, NullLogger.Instance, databaseMayBeMissing: false, CancellationToken.None));
        Assert.DoesNotContain('\n', failure.Message);
        if (!string.IsNullOrEmpty(settings.Password)) Assert.DoesNotContain(settings.Password, failure.Message);
        return failure.Message;
    }
}
