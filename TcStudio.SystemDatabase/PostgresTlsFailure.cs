using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Npgsql;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Turns a failed TLS connection into one line a person can act on. Npgsql says "Exception while performing SSL
/// handshake" and .NET "The remote certificate was rejected by the provided RemoteCertificateValidationCallback",
/// which says neither what was wrong nor what to change. <see cref="DescribeAsync"/> looks at the server's certificate
/// itself (a TLS handshake of its own, same host and port, nothing sent after it) and says whether the certificate is
/// not signed by the CA the client trusts, was not issued for the host name, has expired, or whether the server does not
/// offer TLS at all. TLS failures do not fix themselves, so start-up waits do not retry them.
/// </summary>
public static class PostgresTlsFailure
{
    /// <summary>True for a failure of TLS itself: a rejected certificate, or a server that refuses TLS when it is required.</summary>
    public static bool IsTlsFailure(Exception e) =>
        e is NpgsqlException and not PostgresException
        && (e.InnerException is AuthenticationException || ServerRefusesTls(e));

    private static bool ServerRefusesTls(Exception e) =>
        e.Message.StartsWith("SSL connection requested", StringComparison.Ordinal);

    /// <summary>
    /// Why the TLS connection to <paramref name="target"/> failed, in one line without the connection string (the
    /// path of the Root Certificate is named: it is where the fix goes).
    /// </summary>
    public static async Task<string> DescribeAsync(NpgsqlConnectionStringBuilder target, Exception failure, CancellationToken cancellationToken)
    {
        var mode = $"SSL Mode={target.SslMode}";
        if (ServerRefusesTls(failure))
        {
            return $"the server does not accept TLS connections and {mode} requires TLS "
                + "(turn ssl on at the server; Database:SslMode=Prefer or Disable only on a network you trust)";
        }
        var rootFile = string.IsNullOrEmpty(target.RootCertificate) ? null : target.RootCertificate;
        if (rootFile is not null && !File.Exists(rootFile))
        {
            return $"the Root Certificate file {rootFile} does not exist";
        }

        X509Certificate2? certificate = null;
        var nameMismatch = false;
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(TimeSpan.FromSeconds(Math.Clamp(target.Timeout, 1, 15)));
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(target.Host!, target.Port, deadline.Token);
            var stream = tcp.GetStream();
            // PostgreSQL's SSLRequest: length 8, code 80877103; the server answers 'S' before the TLS handshake.
            var request = new byte[8];
            BinaryPrimitives.WriteInt32BigEndian(request, 8);
            BinaryPrimitives.WriteInt32BigEndian(request.AsSpan(4), 80877103);
            await stream.WriteAsync(request, deadline.Token);
            var answer = new byte[1];
            if (await stream.ReadAsync(answer, deadline.Token) != 1 || answer[0] != (byte)'S')
            {
                return $"the server does not accept TLS connections and {mode} requires TLS";
            }
            await using var tls = new SslStream(stream, leaveInnerStreamOpen: false, (_, presented, _, errors) =>
            {
                if (presented is not null) certificate = new X509Certificate2(presented);
                nameMismatch = (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0;
                return false; // look, never talk
            });
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = target.Host }, deadline.Token);
        }
        catch (Exception e) when (e is AuthenticationException or IOException or SocketException or OperationCanceledException)
        {
            // Expected: the handshake is refused by the callback above once the certificate has been seen.
        }

        using (certificate)
        {
            if (certificate is null) return $"the TLS handshake failed: {failure.InnerException?.Message ?? failure.Message}";
            var what = $"the server's certificate ({certificate.Subject}, issued by {certificate.Issuer})";
            if (certificate.NotAfter.ToUniversalTime() < DateTime.UtcNow)
            {
                return $"{what} expired on {certificate.NotAfter.ToUniversalTime():yyyy-MM-dd}";
            }
            if (!IsTrusted(certificate, rootFile))
            {
                return rootFile is null
                    ? $"{what} is not signed by a CA this machine trusts ({mode}); pass the server's CA as Root Certificate=<file>"
                    : $"{what} is not signed by the CA in Root Certificate {rootFile} ({mode})";
            }
            if (nameMismatch && target.SslMode == SslMode.VerifyFull)
            {
                return $"{what} is not issued for the host name '{target.Host}' but for {Names(certificate)} "
                    + $"({mode} checks the name: connect by one of those names)";
            }
            return $"the TLS handshake failed: {failure.InnerException?.Message ?? failure.Message}";
        }
    }

    private static bool IsTrusted(X509Certificate2 certificate, string? rootFile)
    {
        try
        {
            using var chain = new X509Chain();
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (rootFile is not null)
            {
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.ImportFromPemFile(rootFile);
            }
            return chain.Build(certificate);
        }
        catch (CryptographicException)
        {
            return false; // an unreadable Root Certificate file trusts nothing
        }
    }

    private static string Names(X509Certificate2 certificate)
    {
        var names = certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>()
            .SelectMany(san => san.EnumerateDnsNames().Concat(san.EnumerateIPAddresses().Select(ip => ip.ToString())))
            .ToList();
        return names.Count > 0 ? string.Join(", ", names.Select(n => $"'{n}'")) : $"'{certificate.GetNameInfo(X509NameType.SimpleName, false)}'";
    }
}
