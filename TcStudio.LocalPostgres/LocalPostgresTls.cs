using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace TcStudio.LocalPostgres;

/// <summary>What <see cref="LocalPostgresTls.Ensure"/> did with the certificate files.</summary>
public enum LocalPostgresTlsOutcome
{
    /// <summary>The CA and the server certificate on disk were valid for the host names: kept as they were.</summary>
    Reused,

    /// <summary>No usable CA (first run, expired, unreadable): a new CA and server certificate were written.</summary>
    Created,

    /// <summary>The CA was kept; the server certificate was reissued (expiring, other host names, other CA, missing).</summary>
    ServerCertificateRenewed,
}

/// <summary>
/// The private cluster's TLS material, in <c>&lt;state directory&gt;/tls</c>: a CA of its own (<c>ca.crt</c>,
/// <c>ca.key</c>) and a server certificate it signed (<c>server.crt</c>, <c>server.key</c>) for the host names clients
/// use. Clients trust the CA by passing <c>ca.crt</c> as <c>Root Certificate=</c> (Npgsql) or <c>sslrootcert</c>
/// (libpq); it is never installed into the machine's trust store, so it vouches for this cluster and nothing else.
/// Keys are written 0600. ECDSA P-256: generating a pair takes milliseconds, which matters for the many throwaway
/// test clusters. The files are reused across runs and replaced when they expire within <see cref="RenewBefore"/>
/// or when the host names change.
/// </summary>
public sealed class LocalPostgresTls
{
    public const string DirectoryName = "tls";
    public static readonly TimeSpan CaLifetime = TimeSpan.FromDays(5 * 365);
    public static readonly TimeSpan ServerCertificateLifetime = TimeSpan.FromDays(397);
    public static readonly TimeSpan RenewBefore = TimeSpan.FromDays(30);

    /// <summary>The names in the server certificate: the addresses clients of the cluster connect to.</summary>
    public static readonly IReadOnlyList<string> DefaultHostNames = ["localhost", "127.0.0.1"];

    public LocalPostgresTls(string stateDirectory)
    {
        Directory = Path.Combine(stateDirectory, DirectoryName);
    }

    public string Directory { get; }
    public string CaCertificateFile => Path.Combine(Directory, "ca.crt");
    public string CaKeyFile => Path.Combine(Directory, "ca.key");
    public string ServerCertificateFile => Path.Combine(Directory, "server.crt");
    public string ServerKeyFile => Path.Combine(Directory, "server.key");

    /// <summary>
    /// Makes sure a CA and a server certificate for <paramref name="hostNames"/> valid at <paramref name="now"/> (for at
    /// least <see cref="RenewBefore"/>) are on disk, writing what is missing or stale.
    /// </summary>
    public LocalPostgresTlsOutcome Ensure(IReadOnlyCollection<string> hostNames, DateTimeOffset now)
    {
        System.IO.Directory.CreateDirectory(Directory);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        using var ca = LoadCa(now);
        if (ca is null)
        {
            using var newCa = CreateCa(now);
            WritePem(CaCertificateFile, newCa.ExportCertificatePem(), secret: false);
            WritePem(CaKeyFile, newCa.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(), secret: true);
            IssueServerCertificate(newCa, hostNames, now);
            return LocalPostgresTlsOutcome.Created;
        }
        if (ServerCertificateIsCurrent(ca, hostNames, now)) return LocalPostgresTlsOutcome.Reused;
        IssueServerCertificate(ca, hostNames, now);
        return LocalPostgresTlsOutcome.ServerCertificateRenewed;
    }

    /// <summary>The CA with its private key, or null when it is missing, unreadable or about to expire.</summary>
    private X509Certificate2? LoadCa(DateTimeOffset now)
    {
        if (!File.Exists(CaCertificateFile) || !File.Exists(CaKeyFile)) return null;
        try
        {
            var ca = X509Certificate2.CreateFromPemFile(CaCertificateFile, CaKeyFile);
            if (ca.NotAfter.ToUniversalTime() > (now + RenewBefore).UtcDateTime && ca.NotBefore.ToUniversalTime() <= now.UtcDateTime)
            {
                return ca;
            }
            ca.Dispose();
        }
        catch (CryptographicException)
        {
            // Unreadable or mismatched files: start over with a new CA.
        }
        return null;
    }

    private bool ServerCertificateIsCurrent(X509Certificate2 ca, IReadOnlyCollection<string> hostNames, DateTimeOffset now)
    {
        if (!File.Exists(ServerCertificateFile) || !File.Exists(ServerKeyFile)) return false;
        try
        {
            using var server = X509Certificate2.CreateFromPemFile(ServerCertificateFile, ServerKeyFile);
            if (server.NotAfter.ToUniversalTime() <= (now + RenewBefore).UtcDateTime || server.NotBefore.ToUniversalTime() > now.UtcDateTime)
            {
                return false;
            }
            var names = server.Extensions.OfType<X509SubjectAlternativeNameExtension>()
                .SelectMany(san => san.EnumerateDnsNames().Concat(san.EnumerateIPAddresses().Select(ip => ip.ToString())))
                .ToHashSet(StringComparer.OrdinalIgnoreCase);
            if (!names.SetEquals(hostNames)) return false;

            // Signed by this CA (a CA replaced by hand leaves a server certificate no client would accept).
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.ChainPolicy.VerificationTime = now.UtcDateTime;
            return chain.Build(server);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    private static X509Certificate2 CreateCa(DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(
            $"CN=TC Studio local PostgreSQL CA {Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        return request.CreateSelfSigned(now.AddMinutes(-5), now + CaLifetime);
    }

    private void IssueServerCertificate(X509Certificate2 ca, IReadOnlyCollection<string> hostNames, DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={hostNames.First()}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1", "Server Authentication")], critical: false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var names = new SubjectAlternativeNameBuilder();
        foreach (var name in hostNames)
        {
            if (IPAddress.TryParse(name, out var address)) names.AddIpAddress(address);
            else names.AddDnsName(name);
        }
        request.CertificateExtensions.Add(names.Build());

        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f; // a positive serial number
        var notAfter = now + ServerCertificateLifetime;
        if (notAfter > ca.NotAfter) notAfter = ca.NotAfter; // never outlive its issuer
        using var certificate = request.Create(ca, now.AddMinutes(-5), notAfter, serial);
        // Key first: a crash in between leaves a certificate that does not match its key, which the next run replaces.
        WritePem(ServerKeyFile, key.ExportPkcs8PrivateKeyPem(), secret: true);
        WritePem(ServerCertificateFile, certificate.ExportCertificatePem(), secret: false);
    }

    /// <summary>Keys are created 0600 before a byte is written, so no other user ever reads them.</summary>
    private static void WritePem(string path, string pem, bool secret)
    {
        var temporary = path + ".new";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = secret
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        }
        File.Delete(temporary);
        using (var stream = new FileStream(temporary, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(pem);
            writer.Write('\n');
        }
        File.Move(temporary, path, overwrite: true);
    }
}
