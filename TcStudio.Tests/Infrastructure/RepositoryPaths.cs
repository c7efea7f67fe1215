namespace TcStudio.Tests.Infrastructure;

/// <summary>Finds the repository and the built outputs of the product's programs, for tests that run them as processes.</summary>
public static class RepositoryPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>Debug or Release: whatever the tests themselves were built with.</summary>
    public static string Configuration { get; } =
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}") ? "Release" : "Debug";

    public static string ProjectOutput(string project) =>
        Path.Combine(Root, project, "bin", Configuration, "net10.0", project + ".dll");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TcStudio.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("TcStudio.sln not found above " + AppContext.BaseDirectory);
    }
}
