using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using TcStudio.Data.Seeding;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.AppHost;

/// <summary>
/// AppHost runs are whole systems (PostgreSQL, the worker, the API): they run one at a time, beside the other tests,
/// so their timings stay meaningful on a small machine.
/// </summary>
[CollectionDefinition(Name)]
public sealed class AppHostCollection
{
    public const string Name = "AppHost processes";
}

/// <summary>What the AppHost tests check again and again.</summary>
public static class AppHostScenario
{
    public static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(20);

    public static async Task AssertHealthyAsync(Uri api)
    {
        using var http = new HttpClient { BaseAddress = api };
        using var response = await http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>Logs in as the seeded admin with the documented Development password and lists workspaces.</summary>
    public static async Task AssertAdminSeesTwsbpAsync(Uri api)
    {
        using var http = new HttpClient { BaseAddress = api };
        using var login = await http.PostAsJsonAsync("/api/auth/token",
            new { username = "admin", password = SeedOptions.DevelopmentAdminPassword });
        Assert.True(login.StatusCode == HttpStatusCode.OK, $"login: {(int)login.StatusCode} {await login.Content.ReadAsStringAsync()}");
        using var token = JsonDocument.Parse(await login.Content.ReadAsStringAsync());
        var accessToken = token.RootElement.GetProperty("accessToken").GetString();

        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/workspaces");
        request.Headers.Authorization = new("Bearer", accessToken);
        using var workspaces = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, workspaces.StatusCode);
        using var page = JsonDocument.Parse(await workspaces.Content.ReadAsStringAsync());
        var slugs = page.RootElement.GetProperty("items").EnumerateArray().Select(w => w.GetProperty("slug").GetString()).ToList();
        Assert.Contains("twsbp", slugs);
    }

    /// <summary>Sends SIGINT, as Ctrl+C does, and returns the exit code and how long stopping took.</summary>
    public static async Task<(int ExitCode, TimeSpan Took)> InterruptAsync(AppHostProcess appHost)
    {
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        appHost.SendSignal(TcStudio.AppHost.Posix.SIGINT);
        var exitCode = await appHost.WaitForExitAsync(StopLimit);
        Assert.True(exitCode is not null, $"the AppHost did not exit within {StopLimit.TotalSeconds:0} s of SIGINT\n{appHost.Output}");
        return (exitCode.Value, stopwatch.Elapsed);
    }

    /// <summary>
    /// Nothing from the run is left: no process, no server on the state directory, nothing on the API port. A
    /// process that is exiting gets a moment to finish.
    /// </summary>
    public static async Task AssertNothingLeftAsync(AppHostProcess appHost, bool apiPortMayBeInUse = false)
    {
        var leftovers = appHost.LeftoverProcesses();
        for (var attempt = 0; leftovers.Count > 0 && attempt < 30; attempt++)
        {
            await Task.Delay(100);
            leftovers = appHost.LeftoverProcesses();
        }
        Assert.True(leftovers.Count == 0, "processes left behind:\n" + string.Join('\n', leftovers) + "\n" + appHost.Output);
        Assert.False(File.Exists(Path.Combine(appHost.StateDirectory, "data", "postmaster.pid")), "PostgreSQL is still running");

        if (apiPortMayBeInUse) return;
        using var client = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => client.ConnectAsync("localhost", appHost.ApiPort));
    }
}
