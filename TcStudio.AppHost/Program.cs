using System.Diagnostics;

namespace TcStudio.AppHost;

// A namespaced entry point: the API's Program is the global one (WebApplicationFactory<Program> in the tests).
public static class Program
{
    /// <summary>
    /// Brings TC Studio up for local development: PostgreSQL, then the migration worker to completion, then the API;
    /// stops it all on Ctrl+C / SIGINT / SIGTERM. README.md ("Run the system") says what it prints and how to configure it.
    /// </summary>
    public static async Task<int> Main(string[] args)
    {
        var sinceStart = Stopwatch.StartNew();
        using var shutdown = ShutdownSignal.Register();
        try
        {
            var options = AppHostOptions.Load(args);
            var services = ServiceProjects.FromBuild();
            return await new Orchestrator(options, services, sinceStart).RunAsync(shutdown.Token);
        }
        catch (AppHostConfigurationException e)
        {
            Console.Error.WriteLine(e.Message);
            return AppHostExitCodes.BadConfiguration;
        }
    }
}
