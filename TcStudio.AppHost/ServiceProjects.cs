using System.Reflection;

namespace TcStudio.AppHost;

/// <summary>A service the AppHost runs: its built assembly (run as <c>dotnet X.dll</c>) and its project directory.</summary>
public sealed record ServiceProject(string Name, string AssemblyPath, string ProjectDirectory);

/// <summary>
/// The services' locations, baked into this assembly at build time (the EmbedServiceProjectPaths target in the
/// csproj), the way Aspire generates its <c>Projects</c> class: building the AppHost builds them, and the AppHost
/// runs exactly what was built with the same Configuration.
/// </summary>
public sealed record ServiceProjects(string RepositoryRoot, ServiceProject MigrationWorker, ServiceProject Api)
{
    public static ServiceProjects FromBuild()
    {
        var metadata = typeof(ServiceProjects).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .ToDictionary(a => a.Key, a => a.Value ?? "");
        return new ServiceProjects(
            RepositoryRootFromBuild(),
            Read(metadata, "TcStudio.MigrationWorker"),
            Read(metadata, "TcStudio.Api"));
    }

    public static string RepositoryRootFromBuild() =>
        typeof(ServiceProjects).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "TcStudio.RepositoryRoot").Value!;

    private static ServiceProject Read(Dictionary<string, string> metadata, string name)
    {
        var assembly = metadata.GetValueOrDefault($"TcStudio.Service.{name}.Assembly");
        var directory = metadata.GetValueOrDefault($"TcStudio.Service.{name}.ProjectDirectory");
        if (string.IsNullOrEmpty(assembly) || string.IsNullOrEmpty(directory))
        {
            throw new InvalidOperationException($"The AppHost was built without the location of {name}; rebuild it.");
        }
        if (!File.Exists(assembly))
        {
            throw new AppHostConfigurationException(
                $"{name} has not been built ({assembly} is missing). Build the AppHost, which builds it: "
                + "dotnet build TcStudio.AppHost");
        }
        return new ServiceProject(name, assembly, directory);
    }
}
