using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.Procedures;

/// <summary>
/// The API on a PostgreSQL server of its own (a private cluster when the machine has the binaries): the suite
/// compares cluster-wide catalogs (pg_roles, pg_database, pg_db_role_setting), which other test classes change.
/// </summary>
public sealed class AdversarialServerFixture : IAsyncLifetime
{
    public PostgresServer Server { get; } = new();
    public WorkspaceApiFixture Api { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        await Server.InitializeAsync();
        Api = new WorkspaceApiFixture(Server);
        await Api.InitializeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await Api.DisposeAsync();
        await Server.DisposeAsync();
    }
}

/// <summary>
/// A thousand hostile drafts from a fixed seed, through validate, publish and execute against a real environment
/// (one in three of those that pass the static check through the HTTP API, the others through the same calls one
/// layer below it; a sample of the refused ones through the API, and a third of them straight to the server, below
/// the static check): before and after each one that reaches the server, a snapshot of pg_class, pg_proc, pg_namespace,
/// pg_roles (pg_authid), pg_database, pg_db_role_setting, large objects, postgresql.auto.conf and the workspace's own
/// tcstudio rows shows that nothing changed but the drafts' own routines. A failure prints the seed and the draft.
/// </summary>
public sealed class PostgresAdversarialDraftTests(AdversarialServerFixture fixture,
    ITestOutputHelper output) : IClassFixture<AdversarialServerFixture>
{
    private const int Seed = 20261129;
    private const int Count = 1000;

    /// <summary>
    /// Drafts that pass the static check (and the controls) go through the HTTP API one in this many; the others go
    /// through the same validate, deploy and execute one layer down (WorkspaceDatabaseService and the provider, as
    /// the API calls them), which costs a fraction of four HTTP requests with their system-database writes.
    /// </summary>
    private const int ApiSampleOfAccepted = 3;

    /// <summary>Statically refused drafts go through the API one in this many (they never reach the server there)…</summary>
    private const int ApiSampleOfRefused = 10;

    /// <summary>…and straight to the server, below the static check, one in this many.</summary>
    private const int ServerSampleOfRefused = 3;

    private const int MinimumServerReachPerClass = 8;

    private WorkspaceApiFixture Api => fixture.Api;

    private sealed class Tally
    {
        public int ThroughApi, ServerValidations, Published, Executed, BelowApi, BelowStatic, FooledStatic, Snapshots;
        public TimeSpan ApiTime, BelowTime, SnapshotTime;
        public readonly Dictionary<string, int> ServerReach = [];
        public readonly Dictionary<string, int> ServerOutcomes = [];

        public void Reached(AdversarialDraft draft)
        {
            ServerReach[draft.Technique] = ServerReach.GetValueOrDefault(draft.Technique) + 1;
            ServerReach["payload:" + draft.Payload] = ServerReach.GetValueOrDefault("payload:" + draft.Payload) + 1;
        }

        public void Outcome(string what) => ServerOutcomes[what] = ServerOutcomes.GetValueOrDefault(what) + 1;
    }

    /// <summary>What one run needs: the API client, the environment, the provider below the API.</summary>
    private sealed record Run(HttpClient Admin, string Procedures, WorkspaceDatabaseService Databases, PostgresWorkspaceProvider Provider,
        WorkspaceTarget Target, string Database, string OwnerRole, string MarkerPrefix, bool Strict, HashSet<string> Baseline, Tally Tally);

    [Fact]
    public async Task Hostile_drafts_change_nothing_but_their_own_routine()
    {
        var started = Stopwatch.StartNew();
        var markerPrefix = $"pwn_{Guid.NewGuid():N}"[..12] + "_";
        var drafts = AdversarialDrafts.Generate(Seed, Count, markerPrefix);

        using var admin = await Api.AdminAsync();
        var (slug, database) = await Api.NewWorkspaceWithEnvironmentAsync(admin, "adversarial");
        foreach (var name in AdversarialDrafts.Names)
        {
            await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, name, $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 0';");
        }
        var databases = Api.Factory.Services.GetRequiredService<WorkspaceDatabaseService>();
        var provider = Api.Factory.Services.GetServices<IWorkspaceDatabaseProvider>().OfType<PostgresWorkspaceProvider>().Single();
        var workspaceId = await Api.ScalarAsync<Guid>("SELECT id FROM workspaces WHERE slug = @s", ("s", slug));
        var environmentId = await Api.ScalarAsync<Guid>("SELECT id FROM workspace_environments WHERE workspace_id = @w AND name = 'dev'",
            ("w", workspaceId));
        var target = new WorkspaceTarget(workspaceId, slug, "dev", "local", database, environmentId);

        string ownerRole;
        HashSet<string> baseline, systemBaseline;
        await using (var catalog = await OpenCatalogAsync(database))
        {
            ownerRole = (string)(await new NpgsqlCommand(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()", catalog).ExecuteScalarAsync())!;
            baseline = await SnapshotAsync(catalog, fixture.Server.IsPrivateCluster, markerPrefix);
            systemBaseline = await SystemDigestAsync(catalog);
        }
        var tally = new Tally();
        var run = new Run(admin, $"/api/workspaces/{slug}/procedures", databases, provider, target, database, ownerRole, markerPrefix,
            fixture.Server.IsPrivateCluster, baseline, tally);
        output.WriteLine($"Adversarial drafts: seed {Seed}, {Count} drafts, baseline of {baseline.Count} catalog rows, "
            + $"set up in {started.Elapsed.TotalSeconds:0.0} s.");

        // Lanes by routine name, side by side: one name's drafts stay in order (each replaces the one before).
        var lanes = drafts.GroupBy(d => Array.IndexOf(AdversarialDrafts.Names, d.Name) % Lanes);
        using var stop = new CancellationTokenSource();
        await Task.WhenAll(lanes.Select(lane => Task.Run(async () =>
        {
            await using var catalog = await OpenCatalogAsync(database);
            try
            {
                foreach (var draft in lane)
                {
                    if (stop.IsCancellationRequested) return;
                    await RunDraftAsync(run, draft, catalog);
                }
            }
            catch
            {
                stop.Cancel();
                throw;
            }
        })));

        await using (var catalog = await OpenCatalogAsync(database))
        {
            Assert.Equal(systemBaseline, await SystemDigestAsync(catalog));
        }
        Assert.Empty(Directory.GetFiles("/tmp", markerPrefix + "*"));
        lock (tally)
        {
            output.WriteLine($"Done in {started.Elapsed.TotalSeconds:0.0} s: {tally.ThroughApi} through the HTTP API "
                + $"({tally.ServerValidations} of them validated on the server), "
                + $"{tally.BelowApi} through validate, deploy and execute one layer below it; "
                + $"{tally.Published} published, {tally.Executed} executed; "
                + $"{tally.BelowStatic} straight to the server below the static check, "
                + $"{tally.FooledStatic} passed the static check and were refused by the server (42601); {tally.Snapshots} snapshots. "
                + $"Time in the HTTP API {tally.ApiTime.TotalSeconds:0.0} s, below it {tally.BelowTime.TotalSeconds:0.0} s, "
                + $"snapshots {tally.SnapshotTime.TotalSeconds:0.0} s (summed over {Lanes} lanes).");
            output.WriteLine("Reached the server: " + string.Join(", ", tally.ServerReach.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")));
            output.WriteLine("Server outcomes: " + string.Join(", ", tally.ServerOutcomes.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")));
        }

        foreach (var technique in AdversarialDrafts.Techniques.Append("control"))
        {
            Assert.True(tally.ServerReach.GetValueOrDefault(technique) >= MinimumServerReachPerClass,
                $"Technique '{technique}' reached the server only {tally.ServerReach.GetValueOrDefault(technique)} times (seed {Seed}).");
        }
        foreach (var payload in AdversarialDrafts.Payloads)
        {
            Assert.True(tally.ServerReach.GetValueOrDefault("payload:" + payload) >= MinimumServerReachPerClass,
                $"Payload '{payload}' reached the server only {tally.ServerReach.GetValueOrDefault("payload:" + payload)} times (seed {Seed}).");
        }
        Assert.True(tally.FooledStatic > 0,
            "No draft passed the static check only to be refused by the server: the 42601 defence was not exercised.");
        Assert.True(tally.Executed > 0);
    }

    private const int Lanes = 2;

    private async Task<NpgsqlConnection> OpenCatalogAsync(string database)
    {
        var connection = new NpgsqlConnection(Api.Server.ConnectionString(database, pooling: false));
        await connection.OpenAsync();
        return connection;
    }

    /// <summary>
    /// Validate, deploy and execute as the API does them, without HTTP: the outcome ("executed", "published", or the
    /// refusal's first words). Any exception but a 4xx-typed one fails the test (it would be a 5xx).
    /// </summary>
    private static async Task<string> ValidatePublishExecuteBelowTheApiAsync(Run run, AdversarialDraft draft)
    {
        var validation = await run.Databases.RunAsync(run.Target, WorkspaceCredential.Deploy,
            (lease, ct) => lease.Provider.ValidateAsync(lease.Connection, draft.Name, draft.Sql, ct), CancellationToken.None);
        if (!validation.IsValid) return validation.Errors[0].Message;
        try
        {
            await run.Databases.RunAsync(run.Target, WorkspaceCredential.Deploy, async (lease, ct) =>
            {
                await using var procedureLock = await lease.Provider.LockAsync(lease.Connection,
                    WorkspaceDatabaseService.ProcedureLock(draft.Name), ct);
                return await lease.Provider.DeployAsync(lease.Connection, draft.Name, draft.Sql, "adversary", ct);
            }, CancellationToken.None);
        }
        catch (WorkspaceDatabaseException e) when (TcStudio.Api.Infrastructure.ApiExceptionHandler.StatusOf(e) is >= 400 and < 500)
        {
            return "refused at deploy: " + e.Message;
        }
        try
        {
            await run.Databases.ExecuteAsync(run.Target, draft.Name, new Dictionary<string, JsonElement>(),
                new ExecutionLimits(TimeSpan.FromSeconds(5), 100), CancellationToken.None);
            return "executed";
        }
        catch (WorkspaceDatabaseException e) when (TcStudio.Api.Infrastructure.ApiExceptionHandler.StatusOf(e) is >= 400 and < 500)
        {
            Assert.DoesNotContain(run.OwnerRole, e.Message, StringComparison.OrdinalIgnoreCase);
            return "published";
        }
    }

    private static async Task RunDraftAsync(Run run, AdversarialDraft draft, NpgsqlConnection catalog)
    {
        string Context(string what) => $"Seed {Seed}, {what}\n{draft}";
        var tally = run.Tally;
        var reachedServer = false;
        var staticCheck = run.Provider.ValidateStatically(draft.Name, draft.Sql);
        var clock = Stopwatch.StartNew();
        try
        {
            var throughApi = staticCheck.IsValid || draft.Control ? draft.Index % ApiSampleOfAccepted == 0 : draft.Index % ApiSampleOfRefused == 0;
            if (staticCheck.IsValid && !throughApi)
            {
                reachedServer = true;
                var outcome = await ValidatePublishExecuteBelowTheApiAsync(run, draft);
                if (draft.Control) Assert.True(outcome == "executed", Context($"the control did not get through: {outcome}"));
                lock (tally)
                {
                    tally.BelowApi++;
                    if (outcome.StartsWith("42601", StringComparison.Ordinal)) tally.FooledStatic++;
                    if (outcome is "executed" or "published") tally.Published++;
                    if (outcome == "executed") tally.Executed++;
                    tally.Outcome(outcome.Length > 5 && outcome[5] == ':' ? outcome[..5] : outcome);
                    tally.BelowTime += clock.Elapsed;
                }
            }
            if (throughApi)
            {
                var procedure = $"{run.Procedures}/{draft.Name}";
                // Every draft replaces the one before, whatever its version.
                using var put = new HttpRequestMessage(HttpMethod.Put, procedure) { Content = JsonContent.Create(new { sql = draft.Sql }) };
                put.Headers.IfMatch.Add(System.Net.Http.Headers.EntityTagHeaderValue.Any);
                await ExpectAsync(await run.Admin.SendAsync(put), HttpStatusCode.OK);
                var validation = await HttpAssert.ReadAsync<ValidationResponse>(await run.Admin.PostAsync($"{procedure}/validate?env=dev", null));
                var serverValid = validation.Valid;
                string? serverRefusal = null;
                if (staticCheck.IsValid && !serverValid)
                {
                    var message = validation.Errors[0].Message;
                    serverRefusal = message.Length > 5 && message[5] == ':' ? message[..5] : "refused after the statement";
                }
                var publish = await run.Admin.PostAsync($"{procedure}/publish?env=dev", null);
                var published = await ExpectAsync(publish, HttpStatusCode.OK, HttpStatusCode.UnprocessableEntity);
                Assert.True(publish.StatusCode != HttpStatusCode.OK || serverValid, Context("published although validation refused it"));
                HttpStatusCode? executed = null;
                if (publish.StatusCode == HttpStatusCode.OK)
                {
                    var execute = await run.Admin.PostAsJsonAsync($"{procedure}/execute?env=dev", new { timeoutSeconds = 5 });
                    await ExpectAsync(execute, HttpStatusCode.OK, HttpStatusCode.BadRequest, HttpStatusCode.UnprocessableEntity);
                    executed = execute.StatusCode;
                    if (draft.Control)
                    {
                        Assert.True(execute.StatusCode == HttpStatusCode.OK, Context($"the control did not execute ({(int)execute.StatusCode})"));
                    }
                }
                else if (draft.Control)
                {
                    Assert.Fail(Context($"the control was refused: {published}"));
                }
                Assert.DoesNotContain(run.OwnerRole, validation.ToString(), StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain(run.OwnerRole, published.ToString(), StringComparison.OrdinalIgnoreCase);
                reachedServer = staticCheck.IsValid;
                lock (tally)
                {
                    tally.ThroughApi++;
                    if (staticCheck.IsValid) tally.ServerValidations++;
                    if (serverRefusal is not null) tally.Outcome(serverRefusal);
                    if (serverRefusal == "42601") tally.FooledStatic++;
                    if (executed is not null) tally.Published++;
                    if (executed == HttpStatusCode.OK) tally.Executed++;
                    tally.ApiTime += clock.Elapsed;
                }
            }

            if (!staticCheck.IsValid && draft.Index % ServerSampleOfRefused == 0)
            {
                // Straight to the server, as if the static check had said yes.
                clock.Restart();
                reachedServer = true;
                var shape = PostgresWorkspaceProvider.DraftShape.Unchecked(draft.Sql, draft.Name);
                var validation = await run.Databases.RunAsync(run.Target, WorkspaceCredential.Deploy,
                    (lease, ct) => run.Provider.ValidateOnServerAsync((NpgsqlConnection)lease.Connection, draft.Name, draft.Sql, shape, ct),
                    CancellationToken.None);
                var outcome = validation.IsValid ? "valid" : validation.Errors[0].Message[..Math.Min(5, validation.Errors[0].Message.Length)];
                try
                {
                    await run.Databases.RunAsync(run.Target, WorkspaceCredential.Deploy,
                        (lease, ct) => run.Provider.DeployOnServerAsync((NpgsqlConnection)lease.Connection, draft.Name, draft.Sql, shape,
                            "adversary", ct),
                        CancellationToken.None);
                    outcome += ", deployed";
                }
                catch (WorkspaceDatabaseException e) when (TcStudio.Api.Infrastructure.ApiExceptionHandler.StatusOf(e) is >= 400 and < 500)
                {
                    // Refused: a 4xx for the caller, nothing kept (the snapshot below says so).
                }
                lock (tally)
                {
                    tally.BelowStatic++;
                    tally.Outcome("below the static check: " + outcome);
                    tally.BelowTime += clock.Elapsed;
                }
            }
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            Assert.Fail(Context($"threw {e.GetType().Name}: {e.Message}"));
        }

        if (!reachedServer) return;
        clock.Restart();
        var now = await SnapshotAsync(catalog, run.Strict, run.MarkerPrefix);
        lock (tally)
        {
            tally.Reached(draft);
            tally.Snapshots++;
            tally.SnapshotTime += clock.Elapsed;
        }
        if (!now.SetEquals(run.Baseline))
        {
            var appeared = now.Except(run.Baseline).Take(10);
            var vanished = run.Baseline.Except(now).Take(10);
            Assert.Fail(Context($"the catalogs changed (another lane's draft may have run meanwhile: lanes hold different routine names).\n"
                + $"  new or changed: {string.Join("\n    ", appeared)}\n  gone or changed: {string.Join("\n    ", vanished)}"));
        }
    }

    /// <summary>Reads the response; fails (naming the status and body) unless its status is one of <paramref name="allowed"/>.</summary>
    private static async Task<JsonElement> ExpectAsync(HttpResponseMessage response, params HttpStatusCode[] allowed)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode < 500, $"{(int)response.StatusCode}: {body}");
        Assert.True(allowed.Contains(response.StatusCode),
            $"expected {string.Join(" or ", allowed.Select(s => (int)s))}, got {(int)response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>Digests of the system catalogs' own rows (only a superuser changes them): compared at the start and the end.</summary>
    private static async Task<HashSet<string>> SystemDigestAsync(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand("""
            SELECT concat_ws(' ', 'pg_class (system)', md5(string_agg(concat_ws(' ', c.oid, c.relname, c.relowner, c.relacl), ',' ORDER BY c.oid)))
            FROM pg_class c WHERE c.oid < 16384
            UNION ALL
            SELECT concat_ws(' ', 'pg_proc (system)',
                             md5(string_agg(concat_ws(' ', p.oid, p.proname, p.proowner, p.prosecdef, p.proacl), ',' ORDER BY p.oid)))
            FROM pg_proc p WHERE p.oid < 16384
            """, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        return rows;
    }

    /// <summary>
    /// Everything a draft must not change, as one row per object, in one round trip: user objects in detail (the system
    /// catalogs' own rows are compared at the start and the end, <see cref="SystemDigestAsync"/>). The drafts' own
    /// routines (and their deployment records) are left out: they are the one thing a draft may change, and only as
    /// non-SECURITY DEFINER routines (counted separately).
    /// </summary>
    private static async Task<HashSet<string>> SnapshotAsync(NpgsqlConnection connection, bool strictSharedCatalogs, string markerPrefix)
    {
        // On a shared server (TCSTUDIO_TEST_POSTGRES) other test classes create roles and databases meanwhile: there the
        // cluster-wide catalogs are compared for this database, the roles that may connect to it, and anything marked.
        const string Sql = """
            SELECT concat_ws(' ', 'pg_class', c.oid, c.relname, c.relnamespace::regnamespace, c.relkind, pg_get_userbyid(c.relowner), c.relacl)
            FROM pg_class c WHERE c.oid >= 16384 AND c.relpersistence <> 't'

            UNION ALL
            SELECT concat_ws(' ', 'pg_proc', p.oid::regprocedure, pg_get_userbyid(p.proowner), p.prosecdef, p.proconfig, p.proacl, md5(p.prosrc))
            FROM pg_proc p WHERE p.oid >= 16384 AND NOT (p.proname = ANY ($1))

            UNION ALL
            SELECT concat_ws(' ', 'drafts'' routines that are SECURITY DEFINER or switch roles:', count(*))
            FROM pg_proc p WHERE p.proname = ANY ($1) AND (p.prosecdef OR coalesce(p.proconfig::text, '') ~* '(role|session_authorization)=')
            UNION ALL
            SELECT concat_ws(' ', 'pg_namespace', n.oid, n.nspname, pg_get_userbyid(n.nspowner), n.nspacl)
            FROM pg_namespace n WHERE n.nspname !~ '^pg_(toast_)?temp_'
            UNION ALL
            SELECT concat_ws(' ', 'pg_authid', a.oid, a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
                             a.rolreplication, a.rolbypassrls, a.rolconnlimit, md5(coalesce(a.rolpassword, '')),
                             (SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY m.roleid) FROM pg_auth_members m WHERE m.member = a.oid))
            FROM pg_authid a
            WHERE $2 OR a.rolname LIKE $3 || '%' OR (NOT a.rolsuper AND has_database_privilege(a.oid, current_database(), 'CONNECT'))
            UNION ALL
            SELECT concat_ws(' ', 'pg_database', d.oid, d.datname, pg_get_userbyid(d.datdba), d.datallowconn, d.datconnlimit, d.datacl)
            FROM pg_database d WHERE $2 OR d.datname = current_database() OR d.datname LIKE $3 || '%'
            UNION ALL
            SELECT concat_ws(' ', 'pg_db_role_setting', s.setdatabase, s.setrole, s.setconfig) FROM pg_db_role_setting s
            WHERE $2 OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
               OR s.setrole IN (SELECT oid FROM pg_roles WHERE NOT rolsuper AND has_database_privilege(oid, current_database(), 'CONNECT'))
            UNION ALL
            SELECT concat_ws(' ', 'pg_largeobject_metadata', count(*)) FROM pg_largeobject_metadata
            UNION ALL
            SELECT concat_ws(' ', 'pg_extension', e.extname) FROM pg_extension e
            UNION ALL
            SELECT concat_ws(' ', 'postgresql.auto.conf', f.name, f.setting) FROM pg_file_settings f WHERE f.sourcefile LIKE '%postgresql.auto.conf'
            UNION ALL
            SELECT concat_ws(' ', 'tcstudio_schema_migrations', m.version, m.checksum) FROM tcstudio.tcstudio_schema_migrations m
            UNION ALL
            SELECT concat_ws(' ', 'procedure_deployments', d.id, d.procedure) FROM tcstudio.procedure_deployments d
            WHERE NOT (lower(d.procedure) = ANY ($1))
            """;
        await using var command = new NpgsqlCommand(Sql, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = AdversarialDrafts.Names });
        command.Parameters.Add(new NpgsqlParameter { Value = strictSharedCatalogs });
        command.Parameters.Add(new NpgsqlParameter { Value = markerPrefix });
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.ReadAsync()) rows.Add(reader.IsDBNull(0) ? "<null>" : reader.GetString(0));
        return rows;
    }
}
