using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using Npgsql;
using TcStudio.LocalPostgres;

namespace TcStudio.Benchmarks.Harness;

/// <summary>The machine and server the figures come from, printed above the table and stored with them.</summary>
public sealed record MachineInfo
{
    public required string Cpu { get; init; }
    public required int Cores { get; init; }
    public required double MemoryGiB { get; init; }
    public required string Os { get; init; }
    public required string Runtime { get; init; }
    public required string Build { get; init; }
    public required string LoadAverageAtStart { get; init; }
    public string LoadAverageAtEnd { get; set; } = "";
    public required string PostgresVersion { get; init; }
    public required IReadOnlyDictionary<string, string> PostgresSettings { get; init; }
    public required int OpenFileLimit { get; init; }

    public static string ReadLoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
}

/// <summary>
/// A private, durable PostgreSQL cluster for one benchmark run (fsync, synchronous_commit and full_page_writes on:
/// the product's defaults), in a temporary directory that is deleted at the end, and the databases made on it.
/// </summary>
public sealed class BenchEnvironment : IAsyncDisposable
{
    public const string SystemDatabase = "tc_studio";

    private readonly LocalPostgresCluster _cluster;

    private BenchEnvironment(LocalPostgresCluster cluster, string repositoryRoot)
    {
        _cluster = cluster;
        RepositoryRoot = repositoryRoot;
    }

    public string RepositoryRoot { get; }
    public LocalPostgresCluster Cluster => _cluster;
    public MachineInfo Machine { get; private set; } = null!;

    /// <summary>Debug or Release: the build this benchmark (and the AppHost it starts) came from.</summary>
    public static string Configuration =>
        typeof(BenchEnvironment).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "?";

    public static async Task<BenchEnvironment> StartAsync()
    {
        var cluster = new LocalPostgresCluster(new LocalPostgresOptions
        {
            StateDirectory = Path.Combine(Path.GetTempPath(), "tcstudio-bench", Guid.NewGuid().ToString("N")[..12]),
            Durable = true,
            // Room for the saturation scenario's pool of 50 next to the baselines' and the setup's connections.
            MaxConnections = 300,
        });
        await cluster.StartAsync();
        var environment = new BenchEnvironment(cluster, FindRepositoryRoot());
        environment.Machine = await environment.ReadMachineAsync();
        return environment;
    }

    public string ConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder(_cluster.ConnectionString(database)) { SslMode = SslMode.Disable }.ConnectionString;

    public async Task CreateDatabaseAsync(string name, string? template = null)
    {
        // A template must have no sessions: pooled idle connections to it would make CREATE DATABASE fail.
        NpgsqlConnection.ClearAllPools();
        await Sql.ExecuteAsync(ConnectionString("postgres"), $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        await Sql.ExecuteAsync(ConnectionString("postgres"),
            template is null ? $"CREATE DATABASE {name}" : $"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY");
    }

    public async Task DropDatabaseAsync(string name)
    {
        NpgsqlConnection.ClearAllPools();
        await Sql.ExecuteAsync(ConnectionString("postgres"), $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    }

    /// <summary>Flushes dirty buffers now, so a checkpoint does not land inside the next measurement.</summary>
    public Task CheckpointAsync() => Sql.ExecuteAsync(ConnectionString("postgres"), "CHECKPOINT");

    private async Task<MachineInfo> ReadMachineAsync()
    {
        var settings = new Dictionary<string, string>();
        await using (var connection = new NpgsqlConnection(ConnectionString("postgres")))
        {
            await connection.OpenAsync();
            foreach (var name in new[] { "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers",
                         "max_connections", "work_mem" })
            {
                await using var show = new NpgsqlCommand($"SHOW {name}", connection);
                settings[name] = (string)(await show.ExecuteScalarAsync())!;
            }
        }
        var version = await Sql.ScalarAsync<string>(ConnectionString("postgres"), "SELECT version()");
        return new MachineInfo
        {
            Cpu = ReadCpuModel(),
            Cores = Environment.ProcessorCount,
            MemoryGiB = ReadMemoryGiB(),
            Os = RuntimeInformation.OSDescription,
            Runtime = RuntimeInformation.FrameworkDescription + (System.Runtime.GCSettings.IsServerGC ? ", server GC" : ", workstation GC"),
            Build = Configuration,
            LoadAverageAtStart = MachineInfo.ReadLoadAverage(),
            PostgresVersion = version.Split(" on ")[0],
            PostgresSettings = settings,
            OpenFileLimit = ReadOpenFileLimit(),
        };
    }

    private static string ReadCpuModel()
    {
        if (!File.Exists("/proc/cpuinfo")) return RuntimeInformation.ProcessArchitecture.ToString();
        var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
        return line?.Split(':', 2)[1].Trim() ?? RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static double ReadMemoryGiB()
    {
        if (!File.Exists("/proc/meminfo")) return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1024.0 / 1024 / 1024;
        var line = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        var kib = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        return kib / 1024.0 / 1024;
    }

    private static int ReadOpenFileLimit()
    {
        try
        {
            var limits = File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal));
            var parts = limits?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return parts is { Length: > 3 } && int.TryParse(parts[3], out var soft) ? soft : -1;
        }
        catch (IOException)
        {
            return -1;
        }
    }

    public static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TcStudio.sln"))) return dir.FullName;
        }
        return Directory.GetCurrentDirectory();
    }

    /// <summary>The built output of one of the product's programs, same configuration as this benchmark.</summary>
    public string ProjectOutput(string project) =>
        Path.Combine(RepositoryRoot, project, "bin", Configuration, "net10.0", project + ".dll");

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        var stopwatch = Stopwatch.StartNew();
        await _cluster.DestroyAsync();
        Console.Error.WriteLine($"[bench] cluster stopped and removed in {stopwatch.Elapsed.TotalSeconds:0.0} s");
    }
}
