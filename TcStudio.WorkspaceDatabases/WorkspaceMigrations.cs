using System.Text.RegularExpressions;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// The workspace base schema's migrations, embedded in this assembly as
/// <c>Migrations/&lt;provider&gt;/NNNN_name.up.sql</c> and <c>.down.sql</c>: numbered from 1 without gaps, each with both
/// directions. Their checksums (of the up script) are recorded when applied, so a changed script is detected.
/// </summary>
public static partial class WorkspaceMigrations
{
    private static readonly Dictionary<string, IReadOnlyList<WorkspaceMigration>> Cache = new(StringComparer.Ordinal);

    public static IReadOnlyList<WorkspaceMigration> For(string provider)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(provider, out var cached)) return cached;
            var assembly = typeof(WorkspaceMigrations).Assembly;
            var scripts = new Dictionary<(int Version, string Name), Dictionary<string, string>>();
            foreach (var resource in assembly.GetManifestResourceNames())
            {
                var match = ResourceName().Match(resource);
                if (!match.Success || match.Groups["provider"].Value != provider) continue;
                using var reader = new StreamReader(assembly.GetManifestResourceStream(resource)!);
                var key = (int.Parse(match.Groups["version"].Value), match.Groups["name"].Value);
                if (!scripts.TryGetValue(key, out var directions)) scripts[key] = directions = [];
                directions[match.Groups["direction"].Value] = reader.ReadToEnd();
            }

            var migrations = scripts.OrderBy(s => s.Key.Version).Select(s => new WorkspaceMigration(s.Key.Version, s.Key.Name,
                s.Value.GetValueOrDefault("up") ?? throw new InvalidOperationException($"Workspace migration {s.Key.Name} has no up script."),
                s.Value.GetValueOrDefault("down") ?? throw new InvalidOperationException($"Workspace migration {s.Key.Name} has no down script.")))
                .ToList();
            for (var i = 0; i < migrations.Count; i++)
            {
                if (migrations[i].Version != i + 1)
                {
                    throw new InvalidOperationException($"Workspace migrations for {provider} must be numbered 1, 2, 3... without gaps.");
                }
            }
            return Cache[provider] = migrations;
        }
    }

    [GeneratedRegex(@"\.Migrations\.(?<provider>[a-z]+)\.(?<version>\d{4})_(?<name>[a-z0-9_]+)\.(?<direction>up|down)\.sql$")]
    private static partial Regex ResourceName();
}
