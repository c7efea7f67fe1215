using Microsoft.Extensions.Configuration;

namespace TcStudio.SystemDatabase.Ssh;

/// <summary>
/// A server entry's SSH tunnel (<c>Database:Ssh</c> for the system database, <c>WorkspaceServers:&lt;name&gt;:Ssh</c>
/// for a workspace server): the bastion to sign in to and how to trust it. The database's own host and port stay in
/// the connection string; they are resolved by the bastion, so they may be names only it can see.
/// </summary>
public sealed class SshTunnelOptions
{
    public const string SectionName = "Ssh";

    /// <summary>Where this came from (<c>Database:Ssh</c>), so every message names the keys to fix.</summary>
    public string ConfigurationPath { get; set; } = "";

    public string Host { get; set; } = "";
    public int Port { get; set; } = 22;
    public string User { get; set; } = "";

    /// <summary>An OpenSSH or PEM private key file; or <see cref="PrivateKey"/>, the key's text, from a secret store.</summary>
    public string? PrivateKeyPath { get; set; }

    public string? PrivateKey { get; set; }

    public string? PrivateKeyPassphrase { get; set; }

    /// <summary>OpenSSH known_hosts; unset means <c>~/.ssh/known_hosts</c>.</summary>
    public string? KnownHostsPath { get; set; }

    /// <summary>Accepts a host whose key is in no known_hosts entry. Off by default; a changed key is refused regardless.</summary>
    public bool TrustUnknownHost { get; set; }

    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>SSH keep-alive: a dead bastion or a silently dropped NAT mapping is noticed within a few of these.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Reopening after a drop waits 0.5 s, 1 s, 2 s … up to this, with jitter.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    public string EffectiveKnownHostsPath => string.IsNullOrWhiteSpace(KnownHostsPath)
        ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ssh", "known_hosts")
        : KnownHostsPath;

    /// <summary>The section's options, or null when it names no <c>Host</c> (no tunnel).</summary>
    public static SshTunnelOptions? Read(IConfigurationSection section)
    {
        if (string.IsNullOrWhiteSpace(section["Host"])) return null;
        var options = new SshTunnelOptions();
        try
        {
            section.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new SshTunnelException($"SSH tunnel {section.Path}: a value is not valid ({e.InnerException?.Message ?? e.Message}).");
        }
        options.ConfigurationPath = section.Path;
        options.Host = options.Host.Trim();
        return options;
    }

    /// <summary>One line naming the key that is missing or wrong, or null. Never echoes a value.</summary>
    public string? FindError()
    {
        var path = ConfigurationPath;
        if (Port is < 1 or > 65535) return $"SSH tunnel {path}: Port must be between 1 and 65535.";
        if (string.IsNullOrWhiteSpace(User)) return $"SSH tunnel {path}: User is not set ({path}:User).";
        if (string.IsNullOrWhiteSpace(PrivateKeyPath) && string.IsNullOrWhiteSpace(PrivateKey))
        {
            return $"SSH tunnel {path}: no key; set {path}:PrivateKeyPath (a key file) or {path}:PrivateKey (the key's text, from a secret store).";
        }
        if (ConnectTimeout <= TimeSpan.Zero || KeepAliveInterval <= TimeSpan.Zero || MaxReconnectDelay <= TimeSpan.Zero)
        {
            return $"SSH tunnel {path}: ConnectTimeout, KeepAliveInterval and MaxReconnectDelay must be positive (hh:mm:ss).";
        }
        return null;
    }

    /// <summary>What tells two tunnels apart (never the key's text or passphrase, only whether they are set).</summary>
    internal string Identity => string.Join('|', ConfigurationPath, User, Host, Port, PrivateKeyPath,
        PrivateKey is null ? "" : Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(PrivateKey))),
        EffectiveKnownHostsPath, TrustUnknownHost, ConnectTimeout, KeepAliveInterval, MaxReconnectDelay);
}

/// <summary>A tunnel could not be opened or is misconfigured; the message is one line for an operator, without secrets.</summary>
public sealed class SshTunnelException(string message, Exception? inner = null) : Exception(message, inner);
