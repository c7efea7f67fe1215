using System.Diagnostics;
using System.Net;

namespace TcStudio.AppHost;

/// <summary>
/// Brings the system up in order and down in reverse: PostgreSQL; the migration worker, run to completion; the
/// API, until /health answers 200. Then it waits for a stop request or for something to die. Whatever happens, it
/// stops the API and the worker, then PostgreSQL, before returning.
/// </summary>
public sealed class Orchestrator(AppHostOptions options, ServiceProjects services, Stopwatch sinceStart)
{
    /// <summary>
    /// A terminal's Ctrl+C reaches the services too (one process group), so a service may exit a moment before our
    /// own handler has run. An exit followed this closely by a stop request counts as part of the stop.
    /// </summary>
    private static readonly TimeSpan StopRequestGrace = TimeSpan.FromSeconds(1);

    private PostgresResource? _postgres;
    private ChildProcess? _worker;
    private ChildProcess? _api;

    public async Task<int> RunAsync(CancellationToken stopRequested)
    {
        try
        {
            return await RunUntilStoppedAsync(stopRequested);
        }
        catch (OperationCanceledException) when (stopRequested.IsCancellationRequested)
        {
            return AppHostExitCodes.Stopped;
        }
        catch (StepFailedException e)
        {
            Console.Error.WriteLine(e.Message);
            return AppHostExitCodes.Failed;
        }
        catch (AppHostConfigurationException e)
        {
            Console.Error.WriteLine(e.Message);
            return AppHostExitCodes.BadConfiguration;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
        {
            // PostgreSQL's tools failing (initdb, pg_ctl), a process that cannot be started: one line, then clean up.
            Console.Error.WriteLine($"TC Studio could not start: {e.Message}");
            return AppHostExitCodes.Failed;
        }
        finally
        {
            await StopEverythingAsync();
        }
    }

    private async Task<int> RunUntilStoppedAsync(CancellationToken stopRequested)
    {
        _postgres = await PostgresResource.StartAsync(options);
        stopRequested.ThrowIfCancellationRequested();

        await RunMigrationWorkerAsync(stopRequested);
        await StartApiAsync(stopRequested);
        PrintBanner();

        var apiExited = _api!.Exited;
        var postgresGone = _postgres.WatchAsync(stopRequested);
        var stopped = Task.Delay(Timeout.Infinite, stopRequested);
        var first = await Task.WhenAny(apiExited, postgresGone, stopped);
        if (stopRequested.IsCancellationRequested) return AppHostExitCodes.Stopped;
        if (first == apiExited)
        {
            if (await StopRequestedSoonAsync(stopRequested)) return AppHostExitCodes.Stopped;
            throw new StepFailedException(
                $"The API exited unexpectedly with code {ChildProcess.Describe(await apiExited)}{Because(_api)}. Stopping TC Studio.");
        }
        throw new StepFailedException("PostgreSQL stopped unexpectedly (see its log in the state directory). Stopping TC Studio.");
    }

    private async Task RunMigrationWorkerAsync(CancellationToken stopRequested)
    {
        var stopwatch = Stopwatch.StartNew();
        _worker = ChildProcess.Start("worker", services.MigrationWorker, ServiceEnvironment(forWorker: true));
        Console.WriteLine($"Migration worker: started (pid {_worker.Id}): migrate, then seed.");
        var exitCode = await _worker.Exited.WaitAsync(stopRequested);
        if (exitCode != 0)
        {
            if (await StopRequestedSoonAsync(stopRequested)) throw new OperationCanceledException(stopRequested);
            throw new StepFailedException(
                $"The migration worker failed with exit code {ChildProcess.Describe(exitCode)}{Because(_worker)}. "
                + "Not starting the API; stopping TC Studio.");
        }
        Console.WriteLine($"Migration worker: done in {stopwatch.Elapsed.TotalSeconds:0.0} s.");
    }

    private async Task StartApiAsync(CancellationToken stopRequested)
    {
        var stopwatch = Stopwatch.StartNew();
        _api = ChildProcess.Start("api", services.Api, ServiceEnvironment(forWorker: false));
        Console.WriteLine($"API: started (pid {_api.Id}) on {options.ApiUrls}; waiting for {HealthUrl} to answer 200.");

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stopRequested);
        deadline.CancelAfter(options.StartTimeout);
        var lastAnswer = "no answer yet";
        var nextProgressReport = TimeSpan.FromSeconds(15);
        while (true)
        {
            if (_api.Exited.IsCompleted)
            {
                if (await StopRequestedSoonAsync(stopRequested)) throw new OperationCanceledException(stopRequested);
                throw new StepFailedException(
                    $"The API exited with code {ChildProcess.Describe(await _api.Exited)} before it became healthy{Because(_api)}. "
                    + "Stopping TC Studio.");
            }
            try
            {
                using var response = await http.GetAsync(HealthUrl, deadline.Token);
                if (response.StatusCode == HttpStatusCode.OK) break;
                lastAnswer = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync(deadline.Token)}";
            }
            catch (HttpRequestException e)
            {
                lastAnswer = e.Message; // not listening yet
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
                lastAnswer = "no answer within 5 s";
            }
            catch (OperationCanceledException) when (!stopRequested.IsCancellationRequested)
            {
                throw new StepFailedException(
                    $"The API did not become healthy within {options.StartTimeout.TotalSeconds:0} s ({AppHostOptions.Section}:StartTimeout); "
                    + $"last answer from {HealthUrl}: {lastAnswer}. Stopping TC Studio.");
            }
            if (stopwatch.Elapsed > nextProgressReport)
            {
                Console.WriteLine($"API: still waiting for {HealthUrl} ({stopwatch.Elapsed.TotalSeconds:0} s; last answer: {lastAnswer}).");
                nextProgressReport += TimeSpan.FromSeconds(15);
            }
            await Task.WhenAny(_api.Exited, Task.Delay(TimeSpan.FromMilliseconds(200)));
        }
        Console.WriteLine($"API: healthy in {stopwatch.Elapsed.TotalSeconds:0.0} s.");
    }

    private Uri HealthUrl => new(options.ApiUrl, "/health");

    /// <summary>
    /// Environment variables named as Aspire names them, so the services run the same under a stock Aspire AppHost.
    /// Everything else is inherited from the AppHost's own environment.
    /// </summary>
    private Dictionary<string, string?> ServiceEnvironment(bool forWorker)
    {
        var environment = new Dictionary<string, string?>
        {
            ["ConnectionStrings__tcstudio"] = options.SystemDatabaseConnectionString(_postgres!.Server),
            // The services need the system database only; the server-wide credentials stay with the AppHost.
            ["ConnectionStrings__postgres"] = null,
            ["DOTNET_ENVIRONMENT"] = options.EnvironmentName,
            ["OTEL_SERVICE_NAME"] = forWorker ? "migration-worker" : "api",
        };
        if (options.SqlConnectionString is { } sql) environment["ConnectionStrings__sql"] = sql;
        if (options.OtlpEndpoint is { } otlp) environment[AppHostOptions.OtlpEndpointKey] = otlp;
        if (forWorker)
        {
            foreach (var (key, value) in options.SeedPasswords) environment[key.Replace(":", "__")] = value;
        }
        else
        {
            environment["ASPNETCORE_URLS"] = options.ApiUrls;
            environment["ASPNETCORE_ENVIRONMENT"] = options.EnvironmentName;
        }
        return environment;
    }

    private void PrintBanner()
    {
        var api = options.ApiUrl.ToString().TrimEnd('/');
        Console.WriteLine($"""

            TC Studio is running: API {api} (ready in {sinceStart.Elapsed.TotalSeconds:0.0} s)
              Scalar API reference:  {api}/scalar
              OpenAPI document:      {api}/openapi/v1.json
              Health:                {api}/health
              Seeded users (their passwords are set when they are first seeded; changing the setting later does not change them):
                admin  password: {PasswordSource("Seed:AdminPassword", "DevelopmentAdminPassword")}
                user   password: {PasswordSource("Seed:UserPassword", "DevelopmentUserPassword")}
              PostgreSQL: {_postgres!.Summary}
            Press Ctrl+C to stop.

            """);
    }

    /// <summary>Where a seeded user's password comes from. Never the password itself.</summary>
    private string PasswordSource(string key, string developmentDefault) =>
        options.SeedPasswords.ContainsKey(key)
            ? $"the configured value of {key}"
            : string.Equals(options.EnvironmentName, "Development", StringComparison.OrdinalIgnoreCase)
                ? $"{key} is not set, so the documented Development default (README, Configuration; SeedOptions.{developmentDefault})"
                : $"{key} is not set here; the value it had when the user was first seeded";

    private static string Because(ChildProcess child) => child.Reason is { } reason ? $": {reason.TrimEnd('.')}" : "";

    private static async Task<bool> StopRequestedSoonAsync(CancellationToken stopRequested)
    {
        if (stopRequested.IsCancellationRequested) return true;
        await Task.WhenAny(Task.Delay(StopRequestGrace, stopRequested)); // ends early, without throwing, on a stop request
        return stopRequested.IsCancellationRequested;
    }

    /// <summary>
    /// The API first (it holds connections), then a worker still running, then PostgreSQL. A step that fails is
    /// reported and the next one still runs, so a stuck service never leaves the cluster running.
    /// </summary>
    private async Task StopEverythingAsync()
    {
        foreach (var child in new[] { _api, _worker })
        {
            if (child is null) continue;
            await AttemptAsync($"stop the {child.Prefix}", async () =>
            {
                if (!child.Exited.IsCompleted)
                {
                    Console.WriteLine($"Stopping the {child.Prefix} (pid {child.Id})...");
                    await child.StopAsync(options.StopTimeout);
                }
                child.Dispose();
            });
        }
        if (_postgres is not null) await AttemptAsync("stop PostgreSQL", _postgres.StopAsync);
        await AttemptAsync("report", () =>
        {
            Console.WriteLine("TC Studio stopped.");
            return Task.CompletedTask;
        });
    }

    private static async Task AttemptAsync(string what, Func<Task> step)
    {
        try
        {
            await step();
        }
        catch (Exception e)
        {
            try
            {
                Console.Error.WriteLine($"Could not {what}: {e.Message}");
            }
            catch (IOException)
            {
                // The terminal is gone (SIGHUP): nobody to tell.
            }
        }
    }

    private sealed class StepFailedException(string message) : Exception(message);
}
