using System.Diagnostics;
using Aspire.Hosting.ApplicationModel;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.AppHost;

/// <summary>The whole application, started through the real AppHost, as a developer gets it from F5 or ./run.sh.</summary>
[Collection(AppHostCollection.Name)]
public sealed class AppHostSystemTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_worker_finishes_before_the_api_starts_then_admin_sees_twsbp_and_the_api_reports_telemetry_as_itself()
    {
        await using var receiver = new OtlpReceiver();
        // With one streaming standby (AppHost:Postgres:Replicas): the API lists both hosts and reads its lists from it.
        await using var run = await TcStudioAppHost.CreateAsync(otlpHttpEndpoint: receiver.Endpoint,
            moreArguments: ["--AppHost:Postgres:Replicas=1"]);
        var stopwatch = Stopwatch.StartNew();
        await run.StartAsync();

        var postgres = await run.WaitForHealthyAsync("postgres");
        Assert.Equal("PostgreSQL (local)", postgres.Snapshot.ResourceType);
        Assert.Contains(postgres.Snapshot.Properties, p => p.Name == "postgres.stateDirectory" && Equals(p.Value, run.StateDirectory));
        await run.WaitForHealthyAsync("tcstudio");
        var standbyAddress = (string?)postgres.Snapshot.Properties.Single(p => p.Name == "postgres.standbys").Value;
        Assert.Matches(@"^127\.0\.0\.1:\d+$", standbyAddress);

        var worker = await run.WaitForStateAsync("migration-worker", KnownResourceStates.Finished, KnownResourceStates.Exited);
        Assert.True(worker.Snapshot.ExitCode == 0,
            $"worker exit code {worker.Snapshot.ExitCode}\n{await run.ConsoleLogsAsync("migration-worker")}");
        Assert.Equal(KnownResourceStates.Finished, worker.Snapshot.State?.Text);

        var api = await run.WaitForHealthyAsync("api");
        output.WriteLine($"API healthy {stopwatch.Elapsed.TotalSeconds:0.0} s after the start");
        // The two times come from different clocks' records (DCP's start time has a coarser resolution: 11:02:56.280
        // against 11:02:56.283 once), so a few milliseconds either way mean "at the same moment"; an API that did not
        // wait would start seconds before the worker ends (the worker migrates and seeds first).
        Assert.True(worker.Snapshot.StopTimeStamp <= api.Snapshot.StartTimeStamp + TimeSpan.FromMilliseconds(250),
            $"the API started at {api.Snapshot.StartTimeStamp:O}, before the worker finished at {worker.Snapshot.StopTimeStamp:O}");
        Assert.Contains(api.Snapshot.Urls, u => u.Url.EndsWith("/scalar", StringComparison.Ordinal));
        Assert.Contains(api.Snapshot.Urls, u => u.Url.EndsWith("/openapi/v1.json", StringComparison.Ordinal));

        Assert.Contains("twsbp", await run.AdminWorkspaceSlugsAsync());

        // Least privilege: the API holds the app role's sessions (no superuser, no BYPASSRLS), never the admin's.
        var server = run.Builder.Resources.OfType<IResourceWithConnectionString>().Single(r => r.Name == "postgres");
        await using (var admin = new Npgsql.NpgsqlConnection(
            new Npgsql.NpgsqlConnectionStringBuilder(await server.GetConnectionStringAsync())
            {
                Database = "tc_studio", Pooling = false,
            }.ConnectionString))
        {
            await admin.OpenAsync();
            await using var sessions = new Npgsql.NpgsqlCommand("""
                SELECT string_agg(DISTINCT r.rolname || ' ' || r.rolsuper || ' ' || r.rolbypassrls, ', ')
                FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
                WHERE a.datname = 'tc_studio' AND a.application_name LIKE 'TcStudio.Api%'
                """, admin);
            Assert.Equal("tc_studio_app false false", (string?)await sessions.ExecuteScalarAsync());
        }

        // The workspace list (a standby route) was read on the standby, a server in recovery, as the app role.
        await using (var standby = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(await server.GetConnectionStringAsync())
        {
            Host = "127.0.0.1",
            Port = int.Parse(standbyAddress!.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture),
            Database = "tc_studio",
            Pooling = false,
        }.ConnectionString))
        {
            await standby.OpenAsync();
            await using var sessions = new Npgsql.NpgsqlCommand("""
                SELECT pg_is_in_recovery() || ' ' || coalesce(string_agg(DISTINCT r.rolname, ', '), 'no api session')
                FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
                WHERE a.datname = 'tc_studio' AND a.application_name LIKE 'TcStudio.Api%'
                """, standby);
            Assert.Equal("true tc_studio_app", (string?)await sessions.ExecuteScalarAsync());
        }

        // The worker's normal output is on stdout (warnings, such as slow queries on a busy machine, on stderr).
        var workerLog = (await run.ConsoleLogsAsync("migration-worker")).Split('\n');
        Assert.Contains(workerLog, line => !line.StartsWith("[stderr]", StringComparison.Ordinal) && line.Contains(" migrate: applied"));
        Assert.Contains(workerLog, line => !line.StartsWith("[stderr]", StringComparison.Ordinal) && line.Contains(" seed: created"));

        // The API's telemetry reaches the OTLP endpoint under the resource's own name and instance (the replica id
        // the AppHost gave it), so the dashboard attributes it to 'api'.
        var expectedInstance = api.ResourceId["api-".Length..];
        ExportedSpan? request = null;
        var deadline = Stopwatch.StartNew();
        while (request is null && deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(250);
            request = receiver.Spans.FirstOrDefault(s => s.ServiceName == "api"
                && s.Name.StartsWith("GET /api/workspaces", StringComparison.Ordinal));
        }
        Assert.True(request is not null, "no 'GET /api/workspaces' span from service 'api' reached the receiver; got: "
            + string.Join(", ", receiver.Spans.Select(s => $"{s.ServiceName}/{s.Name}").Distinct().Take(20)));
        Assert.Equal(expectedInstance, request.ServiceInstanceId);
        Assert.NotEmpty(receiver.Bodies("/v1/metrics"));

        await run.StopAsync();
        await run.AssertNothingLeftAsync();
    }
}
