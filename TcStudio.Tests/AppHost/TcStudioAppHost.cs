using System.Diagnostics;
using System.Net.Http.Json;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Api.Auth;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Workspaces;
using TcStudio.LocalPostgres;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

/// <summary>
/// Whole-application runs (the local PostgreSQL cluster, DCP, the worker and the API as processes): one at a time,
/// beside the other tests, so they do not starve each other on a small machine, and so the DCP processes a run
/// leaves can be told apart from another run's.
/// </summary>
[CollectionDefinition(Name)]
public sealed class AppHostCollection
{
    public const string Name = "Aspire AppHost runs";
}

/// <summary>
/// The real AppHost (<c>Projects.TcStudio_AppHost</c>) under Aspire.Hosting.Testing, the way a developer runs it
/// with <c>AppHost:Postgres:Mode=local</c>: PostgreSQL from this machine's binaries in a state directory of the
/// test's own, no SQL Server, and the secrets given as parameters (so nothing is generated into the developer's user
/// secrets). Every service process carries a marker variable, so a test can find any that are left over.
/// </summary>
public sealed class TcStudioAppHost : IAsyncDisposable
{
    public const string RunMarkerVariable = "TCSTUDIO_TEST_APPHOST_RUN";
    public static readonly TimeSpan StartLimit = TimeSpan.FromMinutes(3);

    public string AdminPassword { get; } = "admin-" + Guid.NewGuid().ToString("N")[..16];
    public string UserPassword { get; } = "user-" + Guid.NewGuid().ToString("N")[..16];
    public string SigningKey { get; } = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(48));
    public string RunMarker { get; } = Guid.NewGuid().ToString("N");
    public string StateDirectory { get; }

    public DistributedApplication App { get; private set; } = null!;
    public IDistributedApplicationTestingBuilder Builder { get; private set; } = null!;

    /// <summary>False when the caller gave the state directory (and deletes it itself, after several runs on it).</summary>
    private readonly bool _ownsStateDirectory;

    private TcStudioAppHost(string stateDirectory, bool ownsStateDirectory)
    {
        StateDirectory = stateDirectory;
        _ownsStateDirectory = ownsStateDirectory;
    }

    public static string NewStateDirectory() =>
        Path.Combine(Path.GetTempPath(), "tcstudio-tests", "apphost-" + Guid.NewGuid().ToString("N")[..12]);

    /// <summary>Creates the application model; <paramref name="configure"/> may change it before it is built.</summary>
    /// <param name="existingServer">A connection string for AppHost:Postgres:Mode=existing; null runs the local cluster.</param>
    public static async Task<TcStudioAppHost> CreateAsync(string? stateDirectory = null, string? otlpHttpEndpoint = null,
        Action<IDistributedApplicationTestingBuilder>? configure = null, string? existingServer = null,
        IEnumerable<string>? moreArguments = null)
    {
        var run = new TcStudioAppHost(stateDirectory ?? NewStateDirectory(), ownsStateDirectory: stateDirectory is null);
        var arguments = new List<string>
        {
            existingServer is null ? "--AppHost:Postgres:Mode=local" : "--AppHost:Postgres:Mode=existing",
            $"--AppHost:Postgres:StateDirectory={run.StateDirectory}",
            "--AppHost:SqlServer:Mode=none",
            $"--Parameters:seed-admin-password={run.AdminPassword}",
            $"--Parameters:seed-user-password={run.UserPassword}",
            $"--Parameters:api-signing-key={run.SigningKey}",
        };
        if (existingServer is not null) arguments.Add($"--ConnectionStrings:postgres={existingServer}");
        arguments.AddRange(moreArguments ?? []);
        // The dashboard is off under the testing builder; its OTLP address is where the services send telemetry.
        if (otlpHttpEndpoint is not null) arguments.Add($"--ASPIRE_DASHBOARD_OTLP_HTTP_ENDPOINT_URL={otlpHttpEndpoint}");

        using var timeout = new CancellationTokenSource(StartLimit);
        run.Builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TcStudio_AppHost>([.. arguments], timeout.Token);
        foreach (var service in run.Builder.Resources.OfType<ProjectResource>())
        {
            var resource = run.Builder.CreateResourceBuilder(service).WithEnvironment(RunMarkerVariable, run.RunMarker);
            // Our receiver speaks OTLP/HTTP, not gRPC.
            if (otlpHttpEndpoint is not null) resource.WithOtlpExporter(OtlpProtocol.HttpProtobuf);
        }
        configure?.Invoke(run.Builder);
        return run;
    }

    public async Task StartAsync()
    {
        using var timeout = new CancellationTokenSource(StartLimit);
        App = await Builder.BuildAsync(timeout.Token);
        await App.StartAsync(timeout.Token);
        TrackDcpProcesses();
    }

    public ResourceNotificationService Notifications => App.ResourceNotifications;

    /// <summary>The resource's state once <paramref name="until"/> holds for it (bounded by <see cref="StartLimit"/>).</summary>
    public async Task<ResourceEvent> WaitForAsync(string resource, Func<ResourceEvent, bool> until)
    {
        using var timeout = new CancellationTokenSource(StartLimit);
        try
        {
            return await Notifications.WaitForResourceAsync(resource, until, timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Notifications.TryGetCurrentState(resource, out var last);
            throw new TimeoutException($"{resource} did not reach the expected state within {StartLimit.TotalSeconds:0} s "
                + $"(last: {last?.Snapshot.State?.Text ?? "none"}, health {last?.Snapshot.HealthStatus})\n{await ConsoleLogsAsync(resource)}");
        }
    }

    public Task<ResourceEvent> WaitForStateAsync(string resource, params string[] states) =>
        WaitForAsync(resource, e => states.Contains(e.Snapshot.State?.Text));

    public Task<ResourceEvent> WaitForHealthyAsync(string resource) =>
        WaitForAsync(resource, e => e.Snapshot.State?.Text == KnownResourceStates.Running
            && e.Snapshot.HealthStatus == Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy);

    /// <summary>What the resource wrote to its console so far (stdout and stderr), as the dashboard shows it.</summary>
    public async Task<string> ConsoleLogsAsync(string resource)
    {
        var loggers = App.Services.GetRequiredService<ResourceLoggerService>();
        // A project's logs are kept under its replica's id (api-xyz), a custom resource's under its name.
        var id = Notifications.TryGetCurrentState(resource, out var current) ? current.ResourceId : resource;
        var lines = new List<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await foreach (var batch in loggers.WatchAsync(id).WithCancellation(timeout.Token))
            {
                lines.AddRange(batch.Select(l => (l.IsErrorMessage ? "[stderr] " : "") + l.Content));
            }
        }
        catch (OperationCanceledException)
        {
            // WatchAsync replays what is there, then waits for more: two seconds of silence is the end.
        }
        return string.Join('\n', lines);
    }

    /// <summary>Signs in as the seeded admin with the password given to the AppHost and lists the workspaces' slugs.</summary>
    public async Task<IReadOnlyList<string>> AdminWorkspaceSlugsAsync()
    {
        using var http = App.CreateHttpClient("api", "http");
        var token = await HttpAssert.ReadAsync<TokenResponse>(
            await http.PostAsJsonAsync("/api/auth/token", new { username = "admin", password = AdminPassword }));

        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/workspaces");
        request.Headers.Authorization = new("Bearer", token.AccessToken);
        var page = await HttpAssert.ReadAsync<PagedList<WorkspaceSummary>>(await http.SendAsync(request));
        return page.Items.Select(w => w.Slug).ToList();
    }

    /// <summary>Stops the application as Ctrl+C does (services, then PostgreSQL) and disposes it.</summary>
    public async Task StopAsync()
    {
        if (App is null) return;
        TrackDcpProcesses(); // the per-service monitors started since
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await App.StopAsync(timeout.Token);
        await App.DisposeAsync();
        App = null!;
    }

    /// <summary>The DCP processes of this run seen so far: pid → command line.</summary>
    private readonly Dictionary<int, string> _dcpProcesses = [];

    /// <summary>
    /// Notes this run's DCP processes: the API server watching this test process (runs are serialized, so it is this
    /// run's), every process naming its kubeconfig, and their descendants. Called while the run is up, since a
    /// stopping DCP's processes lose their parents.
    /// </summary>
    public void TrackDcpProcesses()
    {
        var processes = ReadProcesses();
        var kubeconfigs = processes.Values
            .Where(p => p.CommandLine.Contains("dcp", StringComparison.Ordinal)
                && p.CommandLine.Contains($"--monitor {Environment.ProcessId} ", StringComparison.Ordinal))
            .Select(p => System.Text.RegularExpressions.Regex.Match(p.CommandLine, @"--kubeconfig (\S+)").Groups[1].Value)
            .Where(k => k.Length > 0)
            .ToList();
        foreach (var (pid, process) in processes)
        {
            if (kubeconfigs.Any(k => process.CommandLine.Contains(k, StringComparison.Ordinal))) _dcpProcesses[pid] = process.CommandLine;
        }
        for (var added = true; added;)
        {
            added = false;
            foreach (var (pid, process) in processes)
            {
                if (!_dcpProcesses.ContainsKey(pid) && _dcpProcesses.ContainsKey(process.ParentId))
                {
                    _dcpProcesses[pid] = process.CommandLine;
                    added = true;
                }
            }
        }
    }

    /// <summary>
    /// Processes still alive from this run: the services (they carry the run's marker), PostgreSQL (its command line
    /// names the state directory) and DCP (<see cref="TrackDcpProcesses"/>).
    /// </summary>
    public IReadOnlyList<string> LeftoverProcesses()
    {
        var leftovers = new List<string>();
        foreach (var (pid, process) in ReadProcesses())
        {
            if (process.CommandLine.Contains(StateDirectory, StringComparison.Ordinal)
                || process.Environment.Contains($"{RunMarkerVariable}={RunMarker}", StringComparison.Ordinal)
                || (_dcpProcesses.TryGetValue(pid, out var dcp) && dcp == process.CommandLine))
            {
                leftovers.Add($"{pid}: {process.CommandLine}");
            }
        }
        return leftovers;
    }

    private sealed record ProcessInfo(int ParentId, string CommandLine, string Environment);

    private static Dictionary<int, ProcessInfo> ReadProcesses()
    {
        var processes = new Dictionary<int, ProcessInfo>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == System.Environment.ProcessId) continue;
            var status = ReadProcFile(dir, "status");
            var parent = System.Text.RegularExpressions.Regex.Match(status, @"PPid:\s+(\d+)");
            processes[pid] = new ProcessInfo(parent.Success ? int.Parse(parent.Groups[1].Value) : 0,
                ReadProcFile(dir, "cmdline"), ReadProcFile(dir, "environ"));
        }
        return processes;
    }

    /// <summary>Nothing of the run is left: no process (given a few seconds to exit), no server on the state directory.</summary>
    public async Task AssertNothingLeftAsync()
    {
        var stopwatch = Stopwatch.StartNew();
        var leftovers = LeftoverProcesses();
        while (leftovers.Count > 0 && stopwatch.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(250);
            leftovers = LeftoverProcesses();
        }
        Assert.True(leftovers.Count == 0, "processes left behind:\n" + string.Join('\n', leftovers));
        Assert.False(File.Exists(Path.Combine(StateDirectory, "data", "postmaster.pid")), "PostgreSQL is still running");
    }

    private static string ReadProcFile(string processDirectory, string file)
    {
        try
        {
            return File.ReadAllText(Path.Combine(processDirectory, file)).Replace('\0', ' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ""; // exited meanwhile, or not ours to read
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (App is not null)
        {
            try
            {
                await StopAsync();
            }
            catch (Exception e) when (e is OperationCanceledException or InvalidOperationException)
            {
                await App.DisposeAsync();
            }
        }
        if (_ownsStateDirectory) await DeleteStateDirectoryAsync(StateDirectory);
    }

    /// <summary>Stops a server still running on the directory (a failed test) and deletes it.</summary>
    public static async Task DeleteStateDirectoryAsync(string stateDirectory)
    {
        // The standbys of AppHost:Postgres:Replicas live beside it.
        var parent = Path.GetDirectoryName(stateDirectory)!;
        foreach (var standby in Directory.Exists(parent) ? Directory.GetDirectories(parent, Path.GetFileName(stateDirectory) + "-standby-*") : [])
        {
            await new LocalPostgresCluster(new LocalPostgresOptions { StateDirectory = standby }).DestroyAsync();
        }
        if (Directory.Exists(stateDirectory))
        {
            await new LocalPostgresCluster(new LocalPostgresOptions { StateDirectory = stateDirectory }).DestroyAsync();
        }
    }
}
