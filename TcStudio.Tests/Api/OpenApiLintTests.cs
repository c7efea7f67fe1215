using System.Diagnostics;
using System.Text.Json;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>
/// The OpenAPI document a REST consumer gets (/openapi/v1.json, switched on in the test environment) passes
/// Redocly's recommended ruleset (@redocly/cli, pinned in tools/openapi-lint and installed by test.sh) with no errors
/// and no warnings.
/// </summary>
public sealed class OpenApiLintTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private static readonly string LintTool = Path.Combine(RepositoryPaths.Root, "tools", "openapi-lint");

    [Fact]
    public async Task The_openapi_document_is_lint_clean_under_the_recommended_ruleset()
    {
        // The document's server is the host it was fetched from: a deployed name, as a consumer would see it
        // (Redocly's recommended rules flag localhost as a placeholder).
        using var client = api.CreateAnonymousClient();
        client.BaseAddress = new Uri("http://studio.tcstudio.test");
        var document = await client.GetStringAsync("/openapi/v1.json");
        var path = Path.Combine(Path.GetTempPath(), $"tcstudio-openapi-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(path, document);
        try
        {
            var (exitCode, stdout, stderr) = await RunLintAsync(path);
            using var report = JsonDocument.Parse(stdout[stdout.IndexOf('{')..]);
            var totals = report.RootElement.GetProperty("totals");
            var problems = string.Join("\n", report.RootElement.GetProperty("problems").EnumerateArray().Select(p =>
                $"{p.GetProperty("severity").GetString()} {p.GetProperty("ruleId").GetString()}: {p.GetProperty("message").GetString()} at "
                + string.Join(", ", p.GetProperty("location").EnumerateArray().Select(l => l.GetProperty("pointer").GetString()))));
            Assert.True(totals.GetProperty("errors").GetInt32() == 0 && totals.GetProperty("warnings").GetInt32() == 0,
                $"redocly lint (exit {exitCode}): {totals}\n{problems}\n{stderr}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Query_parameters_are_camel_case_and_every_workspace_route_declares_its_slug()
    {
        using var client = api.CreateAnonymousClient();
        using var document = JsonDocument.Parse(await client.GetStringAsync("/openapi/v1.json"));
        foreach (var path in document.RootElement.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                var parameters = operation.Value.TryGetProperty("parameters", out var p) ? p.EnumerateArray().ToList() : [];
                foreach (var parameter in parameters.Where(x => x.GetProperty("in").GetString() == "query"))
                {
                    var name = parameter.GetProperty("name").GetString()!;
                    Assert.True(char.IsLower(name[0]), $"{operation.Name} {path.Name}: query parameter '{name}' is not camelCase");
                }
                if (path.Name.Contains("{slug}"))
                {
                    Assert.Contains(parameters, x => x.GetProperty("in").GetString() == "path" && x.GetProperty("name").GetString() == "slug");
                }
            }
        }
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunLintAsync(string documentPath)
    {
        var redocly = Path.Combine(LintTool, "node_modules", "@redocly", "cli", "bin", "cli.js");
        Assert.True(File.Exists(redocly), $"{redocly} is missing: run scripts/ensure-openapi-lint.sh (test.sh does).");
        var start = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = LintTool,
        };
        foreach (var argument in new[] { redocly, "lint", documentPath, "--config", Path.Combine(LintTool, "redocly.yaml"), "--format", "json" })
        {
            start.ArgumentList.Add(argument);
        }
        // No telemetry or update checks: the linter must not need the network.
        start.Environment["REDOCLY_TELEMETRY"] = "off";
        start.Environment["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
