namespace TcStudio.MigrationWorker;

// A namespaced entry point: the API's Program is the global one (WebApplicationFactory<Program> in the tests).
public static class Program
{
    /// <summary>
    /// Verbs: migrate, revert, status, seed, reset, script, workspaces migrate|status|revert, backup, restore; with none, migrate, seed
    /// and migrate every workspace environment (what the AppHost runs).
    /// </summary>
    public static Task<int> Main(string[] args) => WorkerCommandLine.Create().RunAsync(args);
}
