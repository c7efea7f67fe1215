using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace TcStudio.LocalPostgres;

/// <summary>How a private cluster is laid out and tuned.</summary>
public sealed record LocalPostgresOptions
{
    /// <summary>Holds data/, postgres.log and the superuser password. Must be reachable by the postgres user when root.</summary>
    public required string StateDirectory { get; init; }

    /// <summary>0 picks a free port at each start.</summary>
    public int Port { get; init; }

    /// <summary>
    /// False only for throwaway test clusters: fsync, synchronous_commit and full_page_writes off. The product's
    /// clusters (the AppHost's, the benchmark's) keep PostgreSQL's durable defaults.
    /// </summary>
    public bool Durable { get; init; } = true;

    public int MaxConnections { get; init; } = 200;

    /// <summary>
    /// Extra server settings given at every start (<c>-c name=value</c>; they win over postgresql.conf and are not
    /// written into the data directory), e.g. archive_mode and archive_command for WAL archiving.
    /// </summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// TLS with a CA of the cluster's own (<see cref="LocalPostgresTls"/>): <c>ssl = on</c>, and
    /// <see cref="LocalPostgresCluster.ConnectionString"/> asks for <c>SSL Mode=VerifyFull</c> with that CA. False
    /// only for tests of a server without TLS.
    /// </summary>
    public bool Tls { get; init; } = true;

    /// <summary>The host names (DNS names or IP addresses) the server certificate is issued for.</summary>
    public IReadOnlyList<string> TlsHostNames { get; init; } = LocalPostgresTls.DefaultHostNames;
}

/// <summary>
/// A private PostgreSQL cluster run from the machine's PostgreSQL binaries: created on first start (initdb), started
/// on 127.0.0.1 with its own socket directory, reused on later starts, stopped on request. Used by the AppHost (the
/// embedded development database), by the tests and by the benchmark. initdb and pg_ctl refuse to run as root, so
/// when root they run as the <c>postgres</c> user through runuser and the state directory is handed to that user.
/// </summary>
public sealed class LocalPostgresCluster
{
    public const string Superuser = "postgres";

    private readonly LocalPostgresOptions _options;
    private readonly string _binDirectory;

    public LocalPostgresCluster(LocalPostgresOptions options)
    {
        _options = options;
        _binDirectory = FindBinDirectory();
    }

    public string StateDirectory => _options.StateDirectory;
    public string DataDirectory => Path.Combine(_options.StateDirectory, "data");
    public string LogFile => Path.Combine(_options.StateDirectory, "postgres.log");
    private string PasswordFile => Path.Combine(_options.StateDirectory, "superuser.password");

    /// <summary>The port the running cluster listens on; set by <see cref="StartAsync"/>.</summary>
    public int Port { get; private set; }

    /// <summary>True when this object started the server (so it should stop it); false when it found it running.</summary>
    public bool StartedHere { get; private set; }

    public string Password { get; private set; } = "";

    /// <summary>Where the PostgreSQL binaries in use live.</summary>
    public string BinDirectory => _binDirectory;

    public static bool RunningAsRoot => OperatingSystem.IsLinux() && geteuid() == 0;

    /// <summary>The cluster's CA and server certificate files (present once started, when TLS is on).</summary>
    public LocalPostgresTls TlsFiles => new(_options.StateDirectory);

    /// <summary>True when the server is started with TLS and clients verify it (<see cref="LocalPostgresOptions.Tls"/>).</summary>
    public bool Tls => _options.Tls;

    /// <summary>What the last start did with the certificates (null when TLS is off or before a start).</summary>
    public LocalPostgresTlsOutcome? TlsOutcome { get; private set; }

    /// <summary>
    /// A superuser connection string to <paramref name="database"/> over TCP on 127.0.0.1; with TLS on, it verifies the
    /// server's certificate and name against the cluster's own CA (<c>SSL Mode=VerifyFull;Root Certificate=…</c>).
    /// </summary>
    public string ConnectionString(string database = "postgres") =>
        $"Host=127.0.0.1;Port={Port};Database={database};Username={Superuser};Password={Password}{TlsConnectionSettings}";

    /// <summary><c>;SSL Mode=VerifyFull;Root Certificate=&lt;ca.crt&gt;</c> when TLS is on, else empty.</summary>
    public string TlsConnectionSettings => _options.Tls
        ? $";SSL Mode=VerifyFull;Root Certificate={QuoteConnectionStringValue(TlsFiles.CaCertificateFile)}"
        : "";

    /// <summary>A path may hold ';' or '=': such a value is double-quoted, as Npgsql's connection string parser expects.</summary>
    public static string QuoteConnectionStringValue(string value) =>
        value.IndexOfAny([';', '=', '"', '\'', ' ']) < 0 ? value : $"\"{value.Replace("\"", "\"\"")}\"";

    /// <summary>Creates the cluster if needed and starts it unless it is already running. Returns how long it took.</summary>
    public async Task<TimeSpan> StartAsync(CancellationToken cancellationToken = default)
    {
        var stopwatch = Stopwatch.StartNew();
        PrepareStateDirectory();

        if (!File.Exists(Path.Combine(DataDirectory, "PG_VERSION")))
        {
            await InitializeAsync(cancellationToken);
        }
        Password = (await File.ReadAllTextAsync(PasswordFile, cancellationToken)).Trim();
        PrepareTls();

        if (await ReadRunningPortAsync(cancellationToken) is { } runningPort)
        {
            Port = runningPort;
            StartedHere = false;
            // A server left running reads renewed certificate files on a reload (SIGHUP), without dropping sessions.
            if (TlsOutcome is LocalPostgresTlsOutcome.Created or LocalPostgresTlsOutcome.ServerCertificateRenewed)
            {
                await RunPostgresToolAsync("pg_ctl", cancellationToken, "-D", DataDirectory, "reload");
            }
            return stopwatch.Elapsed;
        }

        Port = _options.Port != 0 ? _options.Port : FindFreePort();
        await RunPostgresToolAsync("pg_ctl", cancellationToken,
            "-D", DataDirectory, "-l", LogFile, "-w", "-t", "60", "-o", $"-p {Port}{SettingsArguments()}", "start");
        StartedHere = true;
        return stopwatch.Elapsed;
    }

    /// <summary>
    /// What every start sets on the command line (so clusters created by older versions get it too): TLS with the
    /// cluster's own certificate, and a log line for each connection attempt (who, from where, to which database;
    /// PostgreSQL never logs the password). <see cref="LocalPostgresOptions.Settings"/> win over these.
    /// </summary>
    private Dictionary<string, string> ServerSettings()
    {
        var settings = new Dictionary<string, string> { ["log_connections"] = "on" };
        if (_options.Tls)
        {
            settings["ssl"] = "on";
            settings["ssl_cert_file"] = TlsFiles.ServerCertificateFile;
            settings["ssl_key_file"] = TlsFiles.ServerKeyFile;
            settings["ssl_min_protocol_version"] = "TLSv1.2";
        }
        foreach (var (name, value) in _options.Settings) settings[name] = value;
        return settings;
    }

    /// <summary>Writes (or keeps) the certificate files; the server reads its key as the postgres user.</summary>
    private void PrepareTls()
    {
        if (!_options.Tls) return;
        var files = TlsFiles;
        TlsOutcome = files.Ensure(_options.TlsHostNames, DateTimeOffset.UtcNow);
        if (RunningAsRoot) Run("chown", ["-R", $"{Superuser}:{Superuser}", files.Directory]);
    }

    /// <summary>pg_ctl hands -o to the server through /bin/sh: each setting is one single-quoted word.</summary>
    private string SettingsArguments() => string.Concat(ServerSettings().Select(setting =>
        System.Text.RegularExpressions.Regex.IsMatch(setting.Key, "^[a-z_][a-z0-9_.]*$")
            ? $" -c '{setting.Key}={setting.Value.Replace("'", "'\\''")}'"
            : throw new ArgumentException($"'{setting.Key}' is not a PostgreSQL setting name.")));

    /// <summary>
    /// Creates and starts a streaming standby of this (running) cluster in <paramref name="stateDirectory"/>, on a port
    /// of its own (<paramref name="port"/>, or a free one): <c>pg_basebackup -R</c> over the local socket (initdb's
    /// pg_hba lets the superuser replicate there), with the same superuser password and TLS files, then started in hot
    /// standby. It follows the primary until stopped; the caller destroys it.
    /// </summary>
    public async Task<LocalPostgresCluster> CreateStandbyAsync(string stateDirectory, int port = 0, CancellationToken cancellationToken = default)
    {
        var standbyDataDirectory = Path.Combine(stateDirectory, "data");
        var settings = new Dictionary<string, string>(_options.Settings)
        {
            ["unix_socket_directories"] = standbyDataDirectory,
            ["hot_standby"] = "on",
        };
        var standby = new LocalPostgresCluster(_options with { StateDirectory = stateDirectory, Port = port, Settings = settings });
        standby.PrepareStateDirectory();
        File.Copy(PasswordFile, standby.PasswordFile, overwrite: true);
        if (_options.Tls)
        {
            Directory.CreateDirectory(standby.TlsFiles.Directory);
            foreach (var file in Directory.GetFiles(TlsFiles.Directory))
            {
                File.Copy(file, Path.Combine(standby.TlsFiles.Directory, Path.GetFileName(file)), overwrite: true);
            }
        }
        if (RunningAsRoot) Run("chown", ["-R", $"{Superuser}:{Superuser}", stateDirectory]);
        await RunPostgresToolAsync("pg_basebackup", cancellationToken,
            "-h", DataDirectory, "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", Superuser,
            "-D", standbyDataDirectory, "-R", "-c", "fast", "-X", "stream");
        await standby.StartAsync(cancellationToken);
        return standby;
    }

    /// <summary>Stops the server (fast shutdown: open sessions are ended).</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (!File.Exists(Path.Combine(DataDirectory, "postmaster.pid"))) return;
        await RunPostgresToolAsync("pg_ctl", cancellationToken, "-D", DataDirectory, "-m", "fast", "-w", "-t", "60", "stop");
    }

    /// <summary>Stops the server and deletes everything under the state directory.</summary>
    public async Task DestroyAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await StopAsync(cancellationToken);
        }
        finally
        {
            if (Directory.Exists(StateDirectory)) Directory.Delete(StateDirectory, recursive: true);
        }
    }

    /// <summary>The port of a server already running on this data directory, or null.</summary>
    public async Task<int?> ReadRunningPortAsync(CancellationToken cancellationToken = default)
    {
        var pidFile = Path.Combine(DataDirectory, "postmaster.pid");
        if (!File.Exists(pidFile)) return null;
        var status = await RunPostgresToolAsync("pg_ctl", cancellationToken, allowFailure: true, "-D", DataDirectory, "status");
        if (status.ExitCode != 0) return null;
        // postmaster.pid: line 4 is the port.
        var lines = await File.ReadAllLinesAsync(pidFile, cancellationToken);
        return lines.Length > 3 && int.TryParse(lines[3].Trim(), out var port) ? port : null;
    }

    private void PrepareStateDirectory()
    {
        Directory.CreateDirectory(StateDirectory);
        if (RunningAsRoot && !OperatingSystem.IsWindows())
        {
            // The postgres user must own the state directory and reach it through every parent.
            Run("chown", ["-R", $"{Superuser}:{Superuser}", StateDirectory]);
            Run("chmod", ["0700", StateDirectory]);
            for (var parent = Path.GetDirectoryName(StateDirectory); !string.IsNullOrEmpty(parent) && parent != "/";
                 parent = Path.GetDirectoryName(parent))
            {
                var mode = File.GetUnixFileMode(parent);
                if ((mode & UnixFileMode.OtherExecute) == 0)
                {
                    throw new InvalidOperationException(
                        $"The postgres user cannot reach {StateDirectory}: {parent} is not searchable by others. "
                        + "Choose a state directory under /var/lib or /tmp.");
                }
            }
        }
    }

    private async Task InitializeAsync(CancellationToken cancellationToken)
    {
        if (Directory.Exists(DataDirectory)) Directory.Delete(DataDirectory, recursive: true);
        var password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
        await File.WriteAllTextAsync(PasswordFile, password + "\n", cancellationToken);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(PasswordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (RunningAsRoot) Run("chown", [$"{Superuser}:{Superuser}", PasswordFile]);

        // Local socket: trust (the socket lives in the owner-only state directory); TCP: password (scram).
        await RunPostgresToolAsync("initdb", cancellationToken,
            "-D", DataDirectory, "-U", Superuser, "--pwfile", PasswordFile, "-E", "UTF8", "--no-locale",
            "--auth-local=trust", "--auth-host=scram-sha-256");

        var settings = new StringBuilder()
            .AppendLine()
            .AppendLine("# Written by TC Studio's LocalPostgresCluster")
            .AppendLine("listen_addresses = '127.0.0.1'")
            .AppendLine($"unix_socket_directories = '{DataDirectory}'")
            .AppendLine($"max_connections = {_options.MaxConnections}")
            .AppendLine("shared_preload_libraries = 'pg_stat_statements'")
            .AppendLine("pg_stat_statements.track = all")
            .AppendLine("log_min_duration_statement = -1");
        if (!_options.Durable)
        {
            settings.AppendLine("fsync = off").AppendLine("synchronous_commit = off").AppendLine("full_page_writes = off");
        }
        await File.AppendAllTextAsync(Path.Combine(DataDirectory, "postgresql.conf"), settings.ToString(), cancellationToken);
        if (RunningAsRoot) Run("chown", ["-R", $"{Superuser}:{Superuser}", StateDirectory]);
    }

    private sealed record ToolResult(int ExitCode, string Output);

    private Task<ToolResult> RunPostgresToolAsync(string tool, CancellationToken cancellationToken, params string[] arguments) =>
        RunPostgresToolAsync(tool, cancellationToken, allowFailure: false, arguments);

    private async Task<ToolResult> RunPostgresToolAsync(
        string tool, CancellationToken cancellationToken, bool allowFailure, params string[] arguments)
    {
        var start = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var executable = Path.Combine(_binDirectory, tool);
        if (RunningAsRoot)
        {
            start.FileName = "runuser";
            foreach (var a in new[] { "-u", Superuser, "--", executable }) start.ArgumentList.Add(a);
        }
        else
        {
            start.FileName = executable;
        }
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["LC_ALL"] = "C";

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {tool}.");
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var output = (await stdout) + (await stderr);
        if (process.ExitCode != 0 && !allowFailure)
        {
            var logTail = File.Exists(LogFile) ? string.Join('\n', File.ReadLines(LogFile).TakeLast(15)) : "";
            throw new InvalidOperationException(
                $"{tool} failed with exit code {process.ExitCode}: {output.Trim()}{(logTail.Length > 0 ? "\n" + logTail : "")}");
        }
        return new ToolResult(process.ExitCode, output);
    }

    private static void Run(string file, string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} failed: {error.Trim()}");
    }

    /// <summary>The newest installed server's binaries: PG_BIN, else /usr/lib/postgresql/N/bin, else pg_config --bindir.</summary>
    public static string FindBinDirectory()
    {
        if (Environment.GetEnvironmentVariable("PG_BIN") is { Length: > 0 } configured) return configured;
        const string debianRoot = "/usr/lib/postgresql";
        if (Directory.Exists(debianRoot))
        {
            var newest = Directory.GetDirectories(debianRoot)
                .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d), out var v), Version: v))
                .Where(d => d.Ok && File.Exists(Path.Combine(d.Dir, "bin", "pg_ctl")))
                .OrderByDescending(d => d.Version)
                .FirstOrDefault();
            if (newest.Dir is not null) return Path.Combine(newest.Dir, "bin");
        }
        try
        {
            var start = new ProcessStartInfo("pg_config", "--bindir") { RedirectStandardOutput = true, UseShellExecute = false };
            using var process = Process.Start(start)!;
            var dir = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit();
            if (process.ExitCode == 0 && File.Exists(Path.Combine(dir, "pg_ctl"))) return dir;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // No pg_config on PATH.
        }
        throw new InvalidOperationException(
            "No PostgreSQL server binaries found (looked in PG_BIN, /usr/lib/postgresql/*/bin and pg_config). "
            + "Install them: apt-get install -y postgresql postgresql-contrib");
    }

    public static int FindFreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern uint geteuid();
}
