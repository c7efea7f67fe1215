using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;
using TcStudio.SystemDatabase.Entities;
using Activity = TcStudio.SystemDatabase.Entities.Activity;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 3: writes through the HTTP API — creating a procedure draft and updating one (each with its activity row,
/// in one transaction) — against the same writes with raw Npgsql in a transaction. Separately: what the transaction
/// costs over the bare statements, with raw Npgsql and with the product's EF pattern (the WorkspaceScopeFilter's
/// BEGIN … SaveChanges … COMMIT against SaveChanges alone).
/// </summary>
public sealed class HttpWritesScenario : IScenario
{
    public const string Workspace = "bench-writes";
    public const int DraftsPerClient = 20;

    public int Number => 3;
    public string Title => "Writes through the HTTP API";
    public string Measures =>
        "requests/s and p50/p95/p99 of creating and of updating a procedure draft through the API (each with its activity row, one "
        + "transaction), against the same writes with raw Npgsql in a transaction; and the transaction's own cost over the bare statements";

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        var system = await context.SystemAsync();
        var api = await context.ApiAsync();
        var token = await context.UserTokenAsync();
        var baseline = await context.BaselineAsync();
        var users = await DataGenerator.ReadSeededUsersAsync(context.SystemConnectionString);
        var connectionString = context.SystemConnectionString;

        // A workspace of its own (the caller is its Owner), so writes do not change what the read scenarios read.
        using (var client = api.CreateClient(token))
        {
            var created = await client.PostAsync("/api/workspaces",
                System.Net.Http.Json.JsonContent.Create(new { name = "Benchmark writes", slug = Workspace }));
            if (!created.IsSuccessStatusCode && created.StatusCode != System.Net.HttpStatusCode.Conflict)
            {
                throw new InvalidOperationException($"Could not create workspace {Workspace}: {(int)created.StatusCode} "
                    + $"{await created.Content.ReadAsStringAsync()}");
            }
        }
        var workspaceId = await Sql.ScalarAsync<Guid>(connectionString, "SELECT id FROM workspaces WHERE slug = @s", ("s", Workspace));
        var maxClients = options.Concurrency.Max();
        // Each client edits drafts of its own (product: upd_C_K, baseline: raw_upd_C_K), cycling over a few, so updates
        // never collide and no single row is rewritten thousands of times a second (dead versions would pile up in
        // its index entries, which measures vacuum, not the write path).
        await Sql.ExecuteAsync(connectionString, """
            INSERT INTO stored_procedures (id, workspace_id, name, sql_draft, created_by, created_at, updated_at)
            SELECT gen_random_uuid(), @w, p || c || '_' || k, 'SELECT 0', @u, now(), now()
            FROM generate_series(0, @n - 1) c, generate_series(0, @k - 1) k, (VALUES ('upd_'), ('raw_upd_')) AS prefix(p)
            ON CONFLICT DO NOTHING
            """, ("w", workspaceId), ("u", users.UserId), ("n", maxClients), ("k", DraftsPerClient));

        var createSpec = new RequestSpec("create", "POST", $"/api/workspaces/{Workspace}/procedures",
            """{"name":"w_{run}_{client}_{seq}","sql":"SELECT {seq} AS n FROM dbo.orders"}""");
        var updateSpec = new RequestSpec("update", "PUT", $"/api/workspaces/{Workspace}/procedures/upd_{{client}}_{{slot}}",
            """{"sql":"SELECT {seq} AS n FROM dbo.orders -- edited"}""", SendIfMatch: true);
        // The baseline's own drafts (raw_upd_C_K), so the two servers never update the same rows.
        var baselineUpdateSpec = updateSpec with { Path = $"/api/workspaces/{Workspace}/procedures/raw_upd_{{client}}_{{slot}}" };
        var conformance = await Baseline.BaselineConformance.CheckWritesAsync(Number, api.BaseUrl, baseline.BaseUrl, token, Workspace);

        var (createAvailable, createDetail) = await api.ProbeAsync(token, HttpMethod.Post, $"/api/workspaces/{Workspace}/procedures",
            new { name = "probe_create", sql = "SELECT 1" });
        string createStatements, updateStatements;
        using (var probe = new StatementProbe(BenchEnvironment.SystemDatabase))
        {
            if (createAvailable)
            {
                await api.ProbeAsync(token, HttpMethod.Post, $"/api/workspaces/{Workspace}/procedures",
                    new { name = "probe_create_2", sql = "SELECT 1" });
            }
            createStatements = probe.Summary();
        }
        var (updateAvailable, updateDetail) = await api.ProbeAsync(token, HttpMethod.Put, $"/api/workspaces/{Workspace}/procedures/probe_create",
            new { sql = "SELECT 2" });
        using (var probe = new StatementProbe(BenchEnvironment.SystemDatabase))
        {
            if (updateAvailable)
            {
                await api.ProbeAsync(token, HttpMethod.Put, $"/api/workspaces/{Workspace}/procedures/probe_create", new { sql = "SELECT 3" });
            }
            updateStatements = probe.Summary();
        }

        await using var dataSource = context.RawDataSource(connectionString);
        var raw = new RawQueries(dataSource);

        var rows = new List<ResultRow> { conformance };
        var workload = new List<string>
        {
            $"workspace {Workspace} (caller 'user' is its Owner); each client updates {DraftsPerClient} drafts of its own in turn, "
                + "so updates never conflict",
            $"create: 100% {createSpec}; " + (createAvailable ? $"the product sends {createStatements}" : createDetail)
                + "; HTTP baseline: BEGIN + settings + the scope check, settings + INSERT procedure + INSERT activity in one batch, COMMIT",
            $"update: 100% {updateSpec}; " + (updateAvailable ? $"the product sends {updateStatements}" : updateDetail)
                + "; HTTP baseline (its own drafts raw_upd_…): BEGIN + settings + the scope check, settings + SELECT the draft, "
                + "settings + UPDATE … RETURNING xmin + INSERT activity in one batch, COMMIT",
        };

        foreach (var clients in options.Concurrency)
        {
            BenchContext.Log($"  create @ {HttpMeasure.Clients(clients)}");
            var create = await HttpMeasure.CompareAsync(context,
                // A new LoadCommand per run, so a new {run} in the names: no run collides with an earlier one's rows.
                createAvailable ? _ => Command(api.BaseUrl, token, createSpec) : null,
                clients, baseline: null, httpBaseline: _ => Command(baseline.BaseUrl, token, createSpec));
            rows.Add(HttpMeasure.Row(Number, $"create procedure draft, {HttpMeasure.Clients(clients)}", create, "HTTP baseline",
                Target(clients), Meets, unavailable: createAvailable ? null : createDetail));

            BenchContext.Log($"  update @ {HttpMeasure.Clients(clients)}");
            var update = await HttpMeasure.CompareAsync(context,
                updateAvailable ? _ => Command(api.BaseUrl, token, updateSpec) with { Slots = DraftsPerClient } : null,
                clients, baseline: null, httpBaseline: _ => Command(baseline.BaseUrl, token, baselineUpdateSpec) with { Slots = DraftsPerClient });
            rows.Add(HttpMeasure.Row(Number, $"update procedure draft, {HttpMeasure.Clients(clients)}", update, "HTTP baseline",
                Target(clients), Meets, unavailable: updateAvailable ? null : updateDetail));
        }

        rows.AddRange(await TransactionOverheadAsync(context, system, dataSource, raw, workspaceId, users.UserId));
        return new ScenarioOutcome(rows, workload);
    }

    private static string? Target(int clients) => clients is 16 or 64 ? "≥0.8× baseline" : null;

    private static bool Meets(Figure product, Latency latency, double? ratio) => ratio >= 0.8;

    private static long _names;

    /// <summary>A procedure name no other write of this benchmark run uses.</summary>
    private static string UniqueName(string prefix) => $"{prefix}_{RunTag}_{Interlocked.Increment(ref _names)}";

    private static readonly string RunTag = Guid.NewGuid().ToString("N")[..6];

    private static LoadCommand Command(string baseUrl, string token, RequestSpec spec) => new()
    {
        BaseUrl = baseUrl, BearerToken = token, Clients = 0, WarmupMs = 0, DurationMs = 0, Requests = [spec],
    };

    private const string InsertProcedure = """
        INSERT INTO stored_procedures (id, workspace_id, name, status, sql_draft, created_by, created_at, updated_at)
        VALUES ($1, $2, $3, 'draft', $4, $5, now(), now()) RETURNING xmin
        """;

    private const string UpdateProcedure = """
        UPDATE stored_procedures SET sql_draft = $1, updated_at = now() WHERE workspace_id = $2 AND lower(name) = lower($3)
        RETURNING id, xmin
        """;

    private const string InsertActivity = """
        INSERT INTO activities (id, workspace_id, user_id, action, entity_type, entity_id, details, created_at)
        VALUES ($1, $2, $3, $4, 'procedure', $5, $6, now())
        """;

    /// <summary>The baseline create: the scope check, then both inserts in one round trip; in a transaction or bare.</summary>
    private static async Task RawCreateAsync(NpgsqlDataSource dataSource, RawQueries raw, Guid workspace, Guid user, string name,
        long seq, bool transaction)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = transaction ? await connection.BeginTransactionAsync() : null;
        await raw.AccessAsync(connection, Workspace, user);
        var id = Guid.CreateVersion7();
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                Command(InsertProcedure, id, workspace, name, $"SELECT {seq} AS n FROM dbo.orders", user),
                Command(InsertActivity, Guid.CreateVersion7(), workspace, user, "procedure.created", id, Details(name)),
            },
        };
        await using (var reader = await batch.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            _ = reader.GetFieldValue<uint>(0);
        }
        if (tx is not null) await tx.CommitAsync();
    }

    /// <summary>The baseline update: the scope check, then UPDATE … RETURNING and the activity insert in one round trip.</summary>
    private static async Task RawUpdateAsync(NpgsqlDataSource dataSource, RawQueries raw, Guid workspace, Guid user, string name,
        long seq, bool transaction)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = transaction ? await connection.BeginTransactionAsync() : null;
        await raw.AccessAsync(connection, Workspace, user);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                Command(UpdateProcedure, $"SELECT {seq} AS n FROM dbo.orders -- edited", workspace, name),
                Command(InsertActivity, Guid.CreateVersion7(), workspace, user, "procedure.updated", Guid.Empty, Details(name)),
            },
        };
        await using (var reader = await batch.ExecuteReaderAsync())
        {
            if (!await reader.ReadAsync()) throw new InvalidOperationException($"No procedure {name}.");
        }
        if (tx is not null) await tx.CommitAsync();
    }

    private static string Details(string name) => $$"""{"name": "{{name}}"}""";

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(value switch
            {
                Guid g => new NpgsqlParameter<Guid> { TypedValue = g },
                string s when s.StartsWith('{') => new NpgsqlParameter<string> { TypedValue = s, NpgsqlDbType = NpgsqlDbType.Jsonb },
                string s => new NpgsqlParameter<string> { TypedValue = s },
                _ => new NpgsqlParameter { Value = value },
            });
        }
        return command;
    }

    /// <summary>
    /// At one client (latency, not queueing): raw BEGIN … COMMIT against the same statements bare; and the product's EF
    /// pattern (as WorkspaceScopeFilter runs a write: a transaction around the scope check and SaveChanges) against
    /// the scope check and SaveChanges alone.
    /// </summary>
    private static async Task<IEnumerable<ResultRow>> TransactionOverheadAsync(BenchContext context, ProductData system,
        NpgsqlDataSource dataSource, RawQueries raw, Guid workspace, Guid user)
    {
        var options = context.Options;
        var rawTx = new List<double>();
        var rawBare = new List<double>();
        var efTx = new List<double>();
        var efBare = new List<double>();
        for (var i = 0; i < options.Runs; i++)
        {
            // Interleaved, one of each in turn, so both see the same machine (commits wait for fsync, which a busy
            // disk makes vary far more than the difference being measured).
            var (tx, bare) = await InterleavedAsync(options,
                seq => RawCreateAsync(dataSource, raw, workspace, user, UniqueName("rtx"), seq, transaction: true),
                seq => RawCreateAsync(dataSource, raw, workspace, user, UniqueName("rbare"), seq, transaction: false));
            rawTx.Add(tx);
            rawBare.Add(bare);
            (tx, bare) = await InterleavedAsync(options,
                seq => EfCreateAsync(system, workspace, user, UniqueName("etx"), transaction: true),
                seq => EfCreateAsync(system, workspace, user, UniqueName("ebare"), transaction: false));
            efTx.Add(tx);
            efBare.Add(bare);
        }
        var rawOverhead = Figure.Time("ms", rawTx.Zip(rawBare, (a, b) => a - b));
        var efOverhead = Figure.Time("ms", efTx.Zip(efBare, (a, b) => a - b));
        return
        [
            new ResultRow
            {
                Scenario = 3,
                What = "create: transaction overhead, raw Npgsql (p50 with BEGIN/COMMIT − p50 bare, interleaved), 1 client",
                Product = rawOverhead,
                Baseline = Figure.Time("ms", rawBare),
                BaselineName = "p50 bare",
                Target = "< 1 ms",
                Verdict = rawOverhead.Median < 1 ? Verdict.Met : Verdict.Missed,
                Note = $"p50 with the transaction {Report.Number(Stats.Median(rawTx))} ms",
            },
            new ResultRow
            {
                Scenario = 3,
                What = "create: transaction overhead, product EF pattern (scope filter's transaction − SaveChanges alone, interleaved), 1 client",
                Product = efOverhead,
                Baseline = Figure.Time("ms", efBare),
                BaselineName = "p50 bare",
                Target = "< 1 ms",
                Verdict = efOverhead.Median < 1 ? Verdict.Met : Verdict.Missed,
                Note = $"p50 with the transaction {Report.Number(Stats.Median(efTx))} ms; in-process, the product's pooled "
                    + "DbContext and interceptors",
            },
        ];
    }

    /// <summary>Runs two operations alternately at one client for the warm-up and the duration; returns their p50s in ms.</summary>
    private static async Task<(double First, double Second)> InterleavedAsync(BenchOptions options, Func<long, Task> first, Func<long, Task> second)
    {
        var firstMs = new List<double>();
        var secondMs = new List<double>();
        var warmUntil = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(options.Warmup.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        var until = warmUntil + (long)(options.Duration.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        for (long seq = 0; System.Diagnostics.Stopwatch.GetTimestamp() < until; seq++)
        {
            var measured = System.Diagnostics.Stopwatch.GetTimestamp() >= warmUntil;
            var at = System.Diagnostics.Stopwatch.GetTimestamp();
            await (seq % 2 == 0 ? first(seq) : second(seq));
            if (measured) (seq % 2 == 0 ? firstMs : secondMs).Add(System.Diagnostics.Stopwatch.GetElapsedTime(at).TotalMilliseconds);
        }
        return (Stats.Median(firstMs), Stats.Median(secondMs));
    }

    private static Task EfCreateAsync(ProductData system, Guid workspace, Guid user, string name, bool transaction) =>
        system.WithContextAsync(db => db.Database.CreateExecutionStrategy().ExecuteAsync(async () =>
        {
            await using var tx = transaction ? await db.Database.BeginTransactionAsync() : null;
            _ = await db.Workspaces.Where(w => w.Slug == Workspace)
                .Select(w => new { w.Id, Role = w.Members.Where(m => m.UserId == user).Select(m => m.Role).FirstOrDefault() })
                .FirstOrDefaultAsync();
            var procedure = new StoredProcedure { WorkspaceId = workspace, Name = name, SqlDraft = "SELECT 1 FROM dbo.orders", CreatedBy = user };
            db.StoredProcedures.Add(procedure);
            db.Activities.Add(new Activity
            {
                WorkspaceId = workspace, UserId = user, Action = "procedure.created", EntityType = EntityTypes.Procedure,
                EntityId = procedure.Id, Details = System.Text.Json.JsonDocument.Parse(Details(name)),
            });
            await db.SaveChangesAsync();
            if (tx is not null) await tx.CommitAsync();
            db.ChangeTracker.Clear();
            return 0;
        }));
}
