namespace TcStudio.Tests.Infrastructure;

/// <summary>Runs the migration worker as a real process against a test database.</summary>
public static class MigrationWorkerRunner
{
    public static string Dll => RepositoryPaths.ProjectOutput("TcStudio.MigrationWorker");

    public static Dictionary<string, string?> Environment(string? connectionString, string environment = "Development") => new()
    {
        ["ConnectionStrings__tcstudio"] = connectionString,
        ["DOTNET_ENVIRONMENT"] = environment,
        ["Database__StartupTimeout"] = "00:00:30",
        // The seeded twsbp/dev environment's database, one per system database (tests share a server).
        ["Seed__DevDatabaseName"] = DevDatabaseName(connectionString),
        ["Workspaces__ConnectTimeout"] = "00:00:02",
        ["Workspaces__SecretKey"] = TestWorkspaceSecretKey,
    };

    /// <summary>The worker's Workspaces:SecretKey in tests (a test value: these clusters are throwaway).</summary>
    public const string TestWorkspaceSecretKey = "dGNzdHVkaW8tdGVzdHMtd29ya3NwYWNlLXNlY3JldHM=";

    public static string? DevDatabaseName(string? connectionString)
    {
        try
        {
            return connectionString is null ? null : new Npgsql.NpgsqlConnectionStringBuilder(connectionString).Database + "_twsbp_dev";
        }
        catch (ArgumentException)
        {
            return null; // tests of malformed connection strings
        }
    }

    public static Task<ProcessResult> RunAsync(string? connectionString, params string[] arguments) =>
        ProcessRunner.RunDotnetAsync(Dll, arguments, Environment(connectionString));

    public static Task<ProcessResult> RunAsync(IDictionary<string, string?> environment, params string[] arguments) =>
        ProcessRunner.RunDotnetAsync(Dll, arguments, environment);
}
