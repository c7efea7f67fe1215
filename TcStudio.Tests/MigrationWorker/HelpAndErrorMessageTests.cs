using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>
/// What a newcomer reads: the root help names the configuration and the exit codes; a mistake is one sentence that
/// names the option or keyword and the expected form (never a .NET type name, never a password); a wait for the
/// database says what it waits for, every few seconds.
/// </summary>
public sealed class HelpAndErrorMessageTests
{
    [Fact]
    public async Task The_root_help_names_the_connection_string_the_keys_each_verb_needs_and_the_exit_codes()
    {
        var result = await MigrationWorkerRunner.RunAsync(connectionString: null, "--help");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("ConnectionStrings:tcstudio", result.StandardOutput);
        Assert.Contains("ConnectionStrings__tcstudio", result.StandardOutput);
        Assert.Contains("Workspaces:SecretKey", result.StandardOutput);
        Assert.Contains("Seed:AdminPassword", result.StandardOutput);
        Assert.Contains("Backup:Directory", result.StandardOutput);
        Assert.Contains("Exit codes: 0 done; 1 failed (one line says why); 2 bad usage or configuration", result.StandardOutput);
        Assert.Contains("workspaces", result.StandardOutput); // and the verbs
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("-1")]
    [InlineData("2.5")]
    public async Task A_version_that_is_not_a_whole_number_is_one_sentence_naming_the_option_and_its_form(string value)
    {
        var result = await MigrationWorkerRunner.RunAsync("Host=localhost;Database=x", "workspaces", "revert", "--to", value);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"--to expects a schema version, a whole number of 0 or more (for example --to 3; 0 reverts everything), not '{value}'.",
            result.StandardError);
        Assert.DoesNotContain("System.", result.AllOutput);
        Assert.DoesNotContain("Nullable", result.AllOutput);
    }

    [Theory]
    [InlineData("Host=localhost;Port=abc;Password=hunter2-secret", "the value of keyword 'Port' is not valid for it (a whole number is expected)")]
    [InlineData("Host=localhost;SSL Mode=sometimes;Password=hunter2-secret", "the value of keyword 'SSL Mode' is not valid for it (one of Disable,")]
    [InlineData("Host=localhost;Password=hunter2-secret;Bogus Keyword=1", "keyword 'Bogus Keyword' is not supported by Npgsql")]
    [InlineData("Host=localhost;Password=hunter2;more", "the text after keyword 'Password' is not Keyword=value; quote a value that contains ';'")]
    public async Task A_malformed_connection_string_names_the_bad_keyword_but_never_a_value(string connectionString, string expected)
    {
        var result = await MigrationWorkerRunner.RunAsync(connectionString, "status");

        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.StandardError.Trim().Split('\n'));
        Assert.Contains("Connection string 'ConnectionStrings:tcstudio' is malformed (" + expected, line);
        Assert.DoesNotContain("hunter2", result.AllOutput);
    }

    [Fact]
    public async Task While_waiting_for_an_unreachable_server_the_worker_prints_one_progress_line_every_few_seconds()
    {
        var port = TcStudio.LocalPostgres.LocalPostgresCluster.FindFreePort();
        var environment = MigrationWorkerRunner.Environment($"Host=127.0.0.1;Port={port};Database=x;Username=u;Password=never-printed");
        environment["Database__StartupTimeout"] = "00:00:11";
        var result = await MigrationWorkerRunner.RunAsync(environment, "status");

        Assert.Equal(1, result.ExitCode);
        var lines = result.StandardError.Trim().Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        var waiting = $"status: waiting for PostgreSQL at 127.0.0.1:{port}/x as u (";
        var progress = lines.Where(l => l.StartsWith(waiting, StringComparison.Ordinal)).ToList();
        // The first at the first failed attempt, then one every 5 s: at least two in 11 s, never one per attempt.
        Assert.InRange(progress.Count, 2, 3);
        Assert.All(progress, l => Assert.Matches(@"\(\d+ s of 11 s\): ", l));
        Assert.DoesNotContain("is not reachable yet", result.AllOutput);
        Assert.DoesNotContain("Could not open a connection", result.AllOutput);
        Assert.Contains(lines, l => l.Contains("did not become reachable within 11 s", StringComparison.Ordinal));
        Assert.DoesNotContain("never-printed", result.AllOutput);
    }
}
