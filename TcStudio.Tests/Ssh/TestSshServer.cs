using System.Diagnostics;
using System.Net.Sockets;
using TcStudio.LocalPostgres;

namespace TcStudio.Tests.Ssh;

/// <summary>
/// A private OpenSSH server for one test class: <c>/usr/sbin/sshd -D -e -f &lt;temporary config&gt;</c> on 127.0.0.1 and
/// a free port, with a generated ed25519 host key and a generated client key in its own authorized_keys — never the
/// system's sshd, never port 22. scripts/ensure-sshd.sh installs Debian's openssh-server when it is missing.
/// </summary>
public sealed class TestSshServer : IAsyncDisposable
{
    public const string SshdPath = "/usr/sbin/sshd";

    private Process? _sshd;
    private readonly System.Text.StringBuilder _log = new();

    private TestSshServer(string directory, int port)
    {
        Directory = directory;
        Port = port;
    }

    public string Directory { get; }
    public int Port { get; }
    public string User { get; } = Environment.UserName;
    public string ClientKeyPath => Path.Combine(Directory, "client_ed25519");
    public string HostKeyPath => Path.Combine(Directory, "host_ed25519");

    /// <summary>A known_hosts file holding this server's host key as <c>[127.0.0.1]:port ssh-ed25519 …</c>.</summary>
    public string KnownHostsPath => Path.Combine(Directory, "known_hosts");

    /// <summary>What sshd wrote to stderr (-e), for failure messages.</summary>
    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    public static async Task<TestSshServer> StartAsync()
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("tcstudio-sshd-").FullName;
        var server = new TestSshServer(directory, LocalPostgresCluster.FindFreePort());
        await KeyGenAsync(server.HostKeyPath);
        await KeyGenAsync(server.ClientKeyPath);
        File.Copy(server.ClientKeyPath + ".pub", Path.Combine(directory, "authorized_keys"));
        var hostKey = (await File.ReadAllTextAsync(server.HostKeyPath + ".pub")).Split(' ');
        await File.WriteAllTextAsync(server.KnownHostsPath, $"[127.0.0.1]:{server.Port} {hostKey[0]} {hostKey[1]}\n");
        await File.WriteAllTextAsync(Path.Combine(directory, "sshd_config"), $"""
            Port {server.Port}
            ListenAddress 127.0.0.1
            HostKey {server.HostKeyPath}
            AuthorizedKeysFile {Path.Combine(directory, "authorized_keys")}
            PidFile none
            StrictModes no
            UsePAM no
            PermitRootLogin prohibit-password
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            AllowTcpForwarding yes
            PermitOpen any
            AllowAgentForwarding no
            X11Forwarding no
            LogLevel ERROR
            """);
        await server.StartProcessAsync();
        return server;
    }

    /// <summary>Generates another key pair, one this server does not know (wrong-key tests).</summary>
    public async Task<string> GenerateStrangerKeyAsync()
    {
        var path = Path.Combine(Directory, $"stranger_{Guid.NewGuid():N}");
        await KeyGenAsync(path);
        return path;
    }

    /// <summary>Starts sshd (again, after <see cref="KillAsync"/>) on the same port with the same keys.</summary>
    public async Task StartProcessAsync()
    {
        // sshd running as root insists on its privilege-separation directory.
        System.IO.Directory.CreateDirectory("/run/sshd");
        var start = new ProcessStartInfo(SshdPath)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "-D", "-e", "-f", Path.Combine(Directory, "sshd_config") }) start.ArgumentList.Add(argument);
        var process = Process.Start(start) ?? throw new InvalidOperationException("sshd did not start.");
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_log) _log.AppendLine(e.Data);
        };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        _sshd = process;

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException($"sshd exited with {process.ExitCode}: {Log}");
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", Port);
                return;
            }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>
    /// Kills this sshd and every session process it forked (by process id; killing only the listener would leave the
    /// established sessions, and so the tunnels, alive).
    /// </summary>
    public async Task KillAsync()
    {
        if (_sshd is null || _sshd.HasExited) return;
        _sshd.Kill(entireProcessTree: true);
        await _sshd.WaitForExitAsync();
        _sshd.Dispose();
        _sshd = null;
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }

    private static async Task KeyGenAsync(string path)
    {
        var start = new ProcessStartInfo("ssh-keygen") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-q", "-t", "ed25519", "-N", "", "-C", "tcstudio-test", "-f", path }) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"ssh-keygen failed: {error}");
    }
}
