using System.Diagnostics;
using System.Text.RegularExpressions;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Documentation;

/// <summary>
/// The README cannot drift silently: its sample output blocks (marked <c>&lt;!-- output: … --&gt;</c>) are compared
/// with what the commands print today, it stays short, and every relative link in it and in docs/ resolves.
/// </summary>
public sealed partial class ReadmeTests(EmptyDatabaseFixture database) : IClassFixture<EmptyDatabaseFixture>
{
    private static string Readme => File.ReadAllText(Path.Combine(RepositoryPaths.Root, "README.md"));

    [Fact]
    public async Task The_run_sh_help_in_the_README_is_what_run_sh_prints_and_it_exits_0()
    {
        var documented = OutputBlock("./run.sh --help");
        using var process = Process.Start(new ProcessStartInfo("bash", ["run.sh", "--help"])
        {
            WorkingDirectory = RepositoryPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();

        Assert.Equal(0, process.ExitCode);
        Assert.Equal(documented, Lines(output));
    }

    [Fact]
    public async Task The_worker_first_run_in_the_README_matches_a_real_first_run_line_for_line()
    {
        var documented = OutputBlock("migration worker, first run");
        // A first run: the database does not exist yet, and the worker creates it (and the dev environment's).
        var fresh = database.DatabaseName + "_first_run";
        var environment = MigrationWorkerRunner.Environment(database.Server.ConnectionString(fresh));
        var devDatabase = environment["Seed__DevDatabaseName"]!;
        try
        {
            var result = await MigrationWorkerRunner.RunAsync(environment, []);
            Assert.True(result.ExitCode == 0, result.ToString());

            // The test's own database names stand where a developer's run has tc_studio and twsbp_dev.
            var printed = Lines(result.StandardOutput.Replace(devDatabase, "twsbp_dev"))
                .Where(line => !LogLine().IsMatch(line)) // the connection log's info: lines and their continuations
                .ToList();
            Assert.True(documented.Count == printed.Count,
                $"The README shows {documented.Count} lines, the worker printed {printed.Count}:\n{string.Join('\n', printed)}");
            foreach (var (expected, actual) in documented.Zip(printed))
            {
                Assert.Matches(AsPattern(expected), actual);
            }

            // The README announces the first run's warnings: nothing else may appear unannounced.
            var all = Lines(result.AllOutput);
            var warnings = all.Select((line, i) => (line, next: i + 1 < all.Count ? all[i + 1] : ""))
                .Where(w => w.line.StartsWith("warn:", StringComparison.Ordinal) || w.line.StartsWith("fail:", StringComparison.Ordinal))
                .Select(w => w.line + " " + w.next.Trim())
                .ToList();
            Assert.All(warnings, warning => Assert.True(
                warning.Contains("3D000: database", StringComparison.Ordinal)
                || warning.Contains("DROP INDEX CONCURRENTLY", StringComparison.Ordinal)
                || warning.Contains("PartitionedActivities", StringComparison.Ordinal)
                || warning.StartsWith("warn: TcStudio.Database.SlowQueries", StringComparison.Ordinal),
                $"a warning the README does not announce: {warning}"));
            Assert.Contains(warnings, w => w.Contains("3D000: database", StringComparison.Ordinal));
            Assert.Equal(2, warnings.Count(w => w.Contains("DROP INDEX CONCURRENTLY", StringComparison.Ordinal)));
            Assert.Contains("Could not open a connection … 3D000: database \"tc_studio\" does not exist", Readme);
            Assert.Contains("DROP INDEX CONCURRENTLY", Readme);
            Assert.Contains("`PartitionedActivities`", Readme);
            Assert.Contains("Slow query", Readme);
        }
        finally
        {
            await database.Server.DropDatabaseAsync(devDatabase);
            await database.Server.DropDatabaseAsync(fresh);
        }
    }

    [Fact]
    public void The_README_is_under_300_lines_and_links_only_to_files_and_headings_that_exist()
    {
        Assert.InRange(Lines(Readme).Count, 1, 299);
        var documents = new[] { "README.md" }
            .Concat(Directory.GetFiles(Path.Combine(RepositoryPaths.Root, "docs"), "*.md").Select(f => Path.Combine("docs", Path.GetFileName(f))));
        var broken = new List<string>();
        foreach (var document in documents)
        {
            var text = File.ReadAllText(Path.Combine(RepositoryPaths.Root, document));
            foreach (Match link in MarkdownLink().Matches(text))
            {
                var target = link.Groups["target"].Value;
                if (target.Contains("://", StringComparison.Ordinal)) continue;
                var (file, anchor) = target.Split('#', 2) is [var f, var a] ? (f, a) : (target, null);
                var path = file.Length == 0 ? document : Path.Combine(Path.GetDirectoryName(document)!, file);
                var full = Path.Combine(RepositoryPaths.Root, path);
                if (!File.Exists(full))
                {
                    broken.Add($"{document}: {target} (no file {path})");
                }
                else if (anchor is not null && !Anchors(File.ReadAllText(full)).Contains(anchor))
                {
                    broken.Add($"{document}: {target} (no heading #{anchor})");
                }
            }
        }
        Assert.True(broken.Count == 0, string.Join('\n', broken));
        Assert.DoesNotContain("../shared/", string.Concat(documents.Select(d => File.ReadAllText(Path.Combine(RepositoryPaths.Root, d)))));
    }

    /// <summary>The fenced block after <c>&lt;!-- output: {name} …--&gt;</c>.</summary>
    private static List<string> OutputBlock(string name)
    {
        var lines = Lines(Readme);
        var marker = lines.FindIndex(l => l.StartsWith($"<!-- output: {name}", StringComparison.Ordinal));
        Assert.True(marker >= 0, $"README has no output block '{name}'");
        Assert.StartsWith("```", lines[marker + 1]);
        var end = lines.FindIndex(marker + 2, l => l.StartsWith("```", StringComparison.Ordinal));
        return lines[(marker + 2)..end];
    }

    /// <summary>Exact, except durations: "(1410 ms)" and "in 6.0 s" stand for any.</summary>
    private static string AsPattern(string documented)
    {
        var pattern = Regex.Escape(documented);
        pattern = Regex.Replace(pattern, @"\\\(\d+\\\ ms\\\)", @"\(\d+ ms\)");
        pattern = Regex.Replace(pattern, @"in\\\ \d+\\\.\d\\\ s", @"in \d+\.\d s");
        return "^" + pattern + "$";
    }

    private static HashSet<string> Anchors(string markdown) =>
        Lines(markdown).Where(l => Regex.IsMatch(l, "^#{1,6} "))
            .Select(l => Regex.Replace(l.TrimStart('#').Trim().ToLowerInvariant(), @"[^\w\- ]", "").Replace(' ', '-'))
            .ToHashSet();

    private static List<string> Lines(string text) =>
        text.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n').ToList();

    [GeneratedRegex(@"^(info|warn|fail|dbug): |^      ")]
    private static partial Regex LogLine();

    [GeneratedRegex(@"\]\((?<target>[^)\s]+)\)")]
    private static partial Regex MarkdownLink();
}
