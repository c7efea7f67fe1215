using System.Security.Cryptography;
using System.Text;

namespace TcStudio.SystemDatabase.Ssh;

/// <summary>
/// Reads OpenSSH known_hosts files: <c>host keytype base64</c>, <c>[host]:port keytype base64</c>, comma-separated
/// host lists, hashed entries (<c>|1|salt|hash</c>), negations (<c>!host</c>) and the <c>@revoked</c> marker
/// (<c>@cert-authority</c> lines are skipped: certificates are not accepted). A host is matched by name and port the way
/// ssh does (port 22 is written without brackets); keys are compared as blobs, so <c>ssh-rsa</c> entries match a
/// server that signs with rsa-sha2-256/512.
/// </summary>
public static class KnownHosts
{
    public enum Verdict { Known, Unknown, Changed, Revoked }

    public static Verdict Check(string knownHostsPath, string host, int port, byte[] keyBlob)
    {
        if (!File.Exists(knownHostsPath)) return Verdict.Unknown;
        var patterns = port == 22 ? new[] { host } : new[] { $"[{host}]:{port}" };
        var sawHost = false;
        foreach (var raw in File.ReadLines(knownHostsPath))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            var marker = fields[0].StartsWith('@') ? fields[0] : null;
            if (marker is not null) fields = fields[1..];
            if (fields.Length < 3 || marker == "@cert-authority") continue;
            if (!HostsMatch(fields[0], patterns[0])) continue;
            byte[] blob;
            try
            {
                blob = Convert.FromBase64String(fields[2]);
            }
            catch (FormatException)
            {
                continue;
            }
            var same = blob.AsSpan().SequenceEqual(keyBlob);
            if (marker == "@revoked")
            {
                if (same) return Verdict.Revoked;
                continue;
            }
            if (same) return Verdict.Known;
            sawHost = true;
        }
        return sawHost ? Verdict.Changed : Verdict.Unknown;
    }

    /// <summary>OpenSSH's SHA256 fingerprint: <c>SHA256:</c> and unpadded base64 of the blob's hash.</summary>
    public static string Fingerprint(byte[] keyBlob) => "SHA256:" + Convert.ToBase64String(SHA256.HashData(keyBlob)).TrimEnd('=');

    /// <summary>A known_hosts line for the key, as ssh-keyscan would print it.</summary>
    public static string Line(string host, int port, string keyType, byte[] keyBlob) =>
        $"{(port == 22 ? host : $"[{host}]:{port}")} {keyType} {Convert.ToBase64String(keyBlob)}";

    private static bool HostsMatch(string hostField, string wanted)
    {
        if (hostField.StartsWith("|1|", StringComparison.Ordinal)) return HashedMatch(hostField, wanted);
        var matched = false;
        foreach (var entry in hostField.Split(','))
        {
            var negated = entry.StartsWith('!');
            var pattern = negated ? entry[1..] : entry;
            if (!Wildcard(pattern, wanted)) continue;
            if (negated) return false;
            matched = true;
        }
        return matched;
    }

    private static bool HashedMatch(string hostField, string wanted)
    {
        var parts = hostField.Split('|'); // "", "1", salt, hash
        if (parts.Length != 4) return false;
        try
        {
            using var hmac = new HMACSHA1(Convert.FromBase64String(parts[2]));
            var hash = hmac.ComputeHash(Encoding.ASCII.GetBytes(wanted));
            return CryptographicOperations.FixedTimeEquals(hash, Convert.FromBase64String(parts[3]));
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>ssh's patterns: '*' any run, '?' one character, case-insensitive.</summary>
    private static bool Wildcard(string pattern, string text)
    {
        if (!pattern.Contains('*') && !pattern.Contains('?')) return string.Equals(pattern, text, StringComparison.OrdinalIgnoreCase);
        var regex = "^" + System.Text.RegularExpressions.Regex.Escape(pattern).Replace(@"\*", ".*").Replace(@"\?", ".") + "$";
        return System.Text.RegularExpressions.Regex.IsMatch(text, regex, System.Text.RegularExpressions.RegexOptions.IgnoreCase);
    }
}
