using System.Security.Cryptography.X509Certificates;
using TcStudio.LocalPostgres;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>The local cluster's certificate files: written once with private keys 0600, reused, renewed when stale.</summary>
public sealed class LocalPostgresTlsTests : IDisposable
{
    private readonly string _stateDirectory = Path.Combine(Path.GetTempPath(), "tcstudio-tests", "tls-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        if (Directory.Exists(_stateDirectory)) Directory.Delete(_stateDirectory, recursive: true);
    }

    [Fact]
    public void Certificates_are_created_once_reused_and_renewed_when_names_change_or_they_expire()
    {
        var tls = new LocalPostgresTls(_stateDirectory);
        var now = DateTimeOffset.UtcNow;

        Assert.Equal(LocalPostgresTlsOutcome.Created, tls.Ensure(LocalPostgresTls.DefaultHostNames, now));
        foreach (var key in new[] { tls.CaKeyFile, tls.ServerKeyFile })
        {
            if (OperatingSystem.IsWindows()) break;
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        }
        var ca = File.ReadAllText(tls.CaCertificateFile);
        var server = File.ReadAllText(tls.ServerCertificateFile);
        using (var certificate = X509Certificate2.CreateFromPem(server))
        {
            var names = certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
            Assert.Equal(["localhost"], names.EnumerateDnsNames());
            Assert.Equal(["127.0.0.1"], names.EnumerateIPAddresses().Select(a => a.ToString()));
        }

        Assert.Equal(LocalPostgresTlsOutcome.Reused, tls.Ensure(LocalPostgresTls.DefaultHostNames, now.AddDays(1)));
        Assert.Equal(server, File.ReadAllText(tls.ServerCertificateFile));

        // Other host names: a new server certificate from the same CA (clients holding ca.crt keep working).
        Assert.Equal(LocalPostgresTlsOutcome.ServerCertificateRenewed, tls.Ensure(["localhost", "127.0.0.1", "db.local"], now));
        Assert.Equal(ca, File.ReadAllText(tls.CaCertificateFile));
        Assert.NotEqual(server, File.ReadAllText(tls.ServerCertificateFile));

        // The server certificate near its end: reissued; the CA near its end: everything anew.
        Assert.Equal(LocalPostgresTlsOutcome.ServerCertificateRenewed,
            tls.Ensure(["localhost", "127.0.0.1", "db.local"], now + LocalPostgresTls.ServerCertificateLifetime - TimeSpan.FromDays(1)));
        Assert.Equal(ca, File.ReadAllText(tls.CaCertificateFile));
        Assert.Equal(LocalPostgresTlsOutcome.Created,
            tls.Ensure(LocalPostgresTls.DefaultHostNames, now + LocalPostgresTls.CaLifetime - TimeSpan.FromDays(1)));
        Assert.NotEqual(ca, File.ReadAllText(tls.CaCertificateFile));
    }

    [Fact]
    public void A_server_certificate_left_by_another_CA_is_reissued()
    {
        var tls = new LocalPostgresTls(_stateDirectory);
        var other = new LocalPostgresTls(Path.Combine(_stateDirectory, "other"));
        tls.Ensure(LocalPostgresTls.DefaultHostNames, DateTimeOffset.UtcNow);
        other.Ensure(LocalPostgresTls.DefaultHostNames, DateTimeOffset.UtcNow);
        File.Copy(other.ServerCertificateFile, tls.ServerCertificateFile, overwrite: true);
        File.Copy(other.ServerKeyFile, tls.ServerKeyFile, overwrite: true);

        Assert.Equal(LocalPostgresTlsOutcome.ServerCertificateRenewed, tls.Ensure(LocalPostgresTls.DefaultHostNames, DateTimeOffset.UtcNow));
    }
}
