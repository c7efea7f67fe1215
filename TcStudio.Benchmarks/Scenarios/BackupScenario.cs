using System.Diagnostics;
using Npgsql;
using TcStudio.LocalPostgres;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 9: the worker's <c>backup</c> and <c>restore</c> (as processes, as an operator runs them) on the large scale
/// database, in MB of database per second, against <c>pg_dump</c> and <c>createdb</c> + <c>pg_restore</c> run by hand
/// with the same format, compression and jobs. The product does more: counts and checksums every table in the dump's
/// snapshot (backup), checks the file's SHA-256 and recomputes every checksum (restore); the ratio is what that costs.
/// </summary>
public sealed class BackupScenario : IScenario
{
    private const string ProductRestore = "bench_backup_restored";
    private const string RawRestore = "bench_backup_raw_restored";
    private const int CompressionLevel = 6;

    public int Number => 9;
    public string Title => "Backups";
    public string Measures =>
        "MB/s (database size on disk / seconds) of the worker's backup and restore on the large scale database, against pg_dump -Fc and "
        + "createdb + pg_restore run by hand with the same compression and jobs";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var environment = context.Environment;
        var worker = environment.ProjectOutput("TcStudio.MigrationWorker");
        if (!File.Exists(worker))
        {
            return new ScenarioOutcome([ResultRow.NotAvailable(Number, Title, $"{worker} is not built")], []);
        }
        var large = (await ScaleDatabases.GetAsync(context)).Large;
        await context.StopApiAsync(); // nothing else competes for the machine
        var bin = LocalPostgresCluster.FindBinDirectory();
        var jobs = Math.Clamp(Environment.ProcessorCount, 1, 4);
        var sizeBytes = await Sql.ScalarAsync<long>(large.ConnectionString, "SELECT pg_database_size(current_database())");
        var megabytes = sizeBytes / 1024.0 / 1024.0;
        var root = Path.Combine(Path.GetTempPath(), "tcstudio-bench", "backup-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        var settings = new NpgsqlConnectionStringBuilder(large.ConnectionString);
        var rawDump = Path.Combine(root, "raw.dump");

        var figures = new Dictionary<string, List<double>>();
        void Add(string key, TimeSpan elapsed) => (figures.TryGetValue(key, out var list) ? list : figures[key] = [])
            .Add(megabytes / elapsed.TotalSeconds);
        long productDumpBytes = 0, rawDumpBytes = 0;
        try
        {
            for (var run = 0; run < options.Runs; run++)
            {
                var directory = Path.Combine(root, $"product-{run}");
                var workerEnvironment = new Dictionary<string, string>
                {
                    ["ConnectionStrings__tcstudio"] = large.ConnectionString,
                    ["DOTNET_ENVIRONMENT"] = "Production",
                    ["Backup__Directory"] = directory,
                    ["Backup__CompressionLevel"] = CompressionLevel.ToString(),
                    ["Backup__RestoreJobs"] = jobs.ToString(),
                    ["Logging__LogLevel__Default"] = "Warning",
                };

                await environment.CheckpointAsync();
                Add("backup", await TimedAsync("dotnet", [worker, "backup"], workerEnvironment));
                var dump = Directory.GetFiles(directory, "*.dump").Single();
                productDumpBytes = new FileInfo(dump).Length;

                await environment.CheckpointAsync();
                File.Delete(rawDump);
                Add("raw-backup", await TimedAsync(Path.Combine(bin, "pg_dump"),
                    ["--format=custom", $"--compress={CompressionLevel}", $"--file={rawDump}", "-h", settings.Host!, "-p", settings.Port.ToString(),
                     "-U", settings.Username!, settings.Database!],
                    new Dictionary<string, string> { ["PGPASSWORD"] = settings.Password ?? "" }));
                rawDumpBytes = new FileInfo(rawDump).Length;

                await environment.DropDatabaseAsync(ProductRestore);
                await environment.CheckpointAsync();
                Add("restore", await TimedAsync("dotnet", [worker, "restore", "--from", dump, "--into", ProductRestore], workerEnvironment));
                await environment.DropDatabaseAsync(ProductRestore);

                await environment.DropDatabaseAsync(RawRestore);
                await environment.CheckpointAsync();
                var rawRestore = Stopwatch.StartNew();
                await Sql.ExecuteAsync(environment.ConnectionString("postgres"), $"CREATE DATABASE {RawRestore} TEMPLATE template0");
                await TimedAsync(Path.Combine(bin, "pg_restore"),
                    [$"--jobs={jobs}", "--exit-on-error", "-h", settings.Host!, "-p", settings.Port.ToString(), "-U", settings.Username!, "-d",
                        RawRestore, rawDump],
                    new Dictionary<string, string> { ["PGPASSWORD"] = settings.Password ?? "" });
                Add("raw-restore", rawRestore.Elapsed);
                await environment.DropDatabaseAsync(RawRestore);
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }

        Figure F(string key) => Figure.Rate("MB/s", figures[key]);
        ResultRow Row(string what, string product, string baseline, string baselineName)
        {
            var ratio = F(product).Median / F(baseline).Median;
            return new ResultRow
            {
                Scenario = Number,
                What = what,
                Product = F(product),
                Baseline = F(baseline),
                BaselineName = baselineName,
                Ratio = ratio,
                RatioMeaning = "× by hand",
                Target = "≥ 0.5× by hand",
                Verdict = ratio >= 0.5 ? Verdict.Met : Verdict.Missed,
            };
        }
        var label = $"{large.Name} ({megabytes:0} MB on disk)";
        return new ScenarioOutcome(
        [
            Row($"backup of {label}", "backup", "raw-backup", "pg_dump -Fc"),
            Row($"restore of {label}, verified", "restore", "raw-restore", "createdb + pg_restore"),
        ],
        [
            large.Description,
            $"product: `dotnet TcStudio.MigrationWorker.dll backup` (pg_dump -Fc -Z {CompressionLevel} reading an exported snapshot "
                + "while the worker counts and "
            + $"checksums every table in it, then SHA-256 and the manifest) and `restore --from FILE --into DB` (SHA-256 check, "
            + $"pg_restore --jobs={jobs}, "
            + "counts and checksums recomputed and compared); process start included",
            $"by hand: pg_dump --format=custom --compress={CompressionLevel}; CREATE DATABASE … TEMPLATE template0 + pg_restore --jobs={jobs}",
            $"dump size: {productDumpBytes / 1024.0 / 1024.0:0.0} MB (product), {rawDumpBytes / 1024.0 / 1024.0:0.0} MB (by hand); MB/s = "
                + "database size on disk / seconds",
        ]);
    }

    private static async Task<TimeSpan> TimedAsync(string file, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("ConnectionStrings__", StringComparison.Ordinal)
            || k.StartsWith("Backup__", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(key);
        }
        foreach (var (key, value) in environment) start.Environment[key] = value;
        var stopwatch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var elapsed = stopwatch.Elapsed;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', arguments.Take(2))} failed (exit {process.ExitCode}): "
                + $"{(await stderr).Trim()} {(await stdout).Trim().Split('\n').LastOrDefault()}");
        }
        return elapsed;
    }
}
