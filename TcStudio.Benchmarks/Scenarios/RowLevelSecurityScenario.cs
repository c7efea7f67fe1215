using Npgsql;
using TcStudio.SystemDatabase.Security;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// Scenario 12: what row-level security costs the hot reads. The product's own statements for each read route, sent
/// as the API sends them (one batch: the <c>set_config</c> of the caller and workspace, then the statements) by the
/// app role, which row-level security applies to; against the very same batch sent by a role that bypasses it. Same
/// data, same concurrency, in-process: the difference is PostgreSQL evaluating the policies.
/// </summary>
public sealed class RowLevelSecurityScenario : IScenario
{
    public int Number => 12;
    public string Title => "Row-level security on the hot reads";
    public string Measures =>
        "statements/s and p50/p95 of each read route's statements sent as the API's app role under row-level security (settings in "
        + "the same batch), against the same batch from a role that bypasses row-level security, at 16 clients";

    private sealed record Read(string Label, Func<Guid, Guid, int, NpgsqlBatchCommand[]> Statements);

    public async Task<ScenarioOutcome> RunAsync(BenchContext context)
    {
        var options = context.Options;
        await context.SystemAsync();
        var users = await DataGenerator.ReadSeededUsersAsync(context.SystemConnectionString);
        var workspace = await Sql.ScalarAsync<Guid>(context.SystemConnectionString, "SELECT id FROM workspaces WHERE slug = @s",
            ("s", BenchContext.ReadWorkspace));
        var pages = context.PagesOf(options.ReadWorkspaceProcedures);
        var terms = DataGenerator.SearchTerms;

        // The app role as the worker's roles step makes it (idempotent; the other benchmark scenarios keep the superuser).
        var admin = new NpgsqlConnectionStringBuilder(context.SystemConnectionString);
        var names = SystemRoleNames.For(admin.Database!);
        const string AppPassword = "bench-app-role";
        await SystemDatabaseRoles.EnsureAsync(context.SystemConnectionString, names, new SystemDatabaseRoles.Passwords(null, AppPassword, null));
        await using var bypassing = context.RawDataSource(context.SystemConnectionString);
        await using var subject = context.RawDataSource(new NpgsqlConnectionStringBuilder(context.SystemConnectionString)
        {
            Username = names.App, Password = AppPassword,
        }.ConnectionString);

        Read[] reads =
        [
            new("GET workspace", (w, u, _) => [Command(RawQueries.Access, BenchContext.ReadWorkspace, u),
                Command(RawQueries.WorkspaceDetails, w, u)]),
            new("procedures list page of 50", (w, u, n) =>
                [Command(RawQueries.Access, BenchContext.ReadWorkspace, u), Command(RawQueries.ProcedureCount, w),
                 Command(RawQueries.ProcedurePage, w, (n % pages) * 50)]),
            new("procedures full-text search", (w, u, n) =>
                [Command(RawQueries.Access, BenchContext.ReadWorkspace, u), Command(RawQueries.SearchCount, w, terms[n % terms.Count]),
                 Command(RawQueries.SearchPage, w, terms[n % terms.Count])]),
            new("activity log first page",
                (w, u, _) => [Command(RawQueries.Access, BenchContext.ReadWorkspace, u), Command(RawQueries.ActivityFirstPage, w)]),
        ];

        var rows = new List<ResultRow>();
        var workload = new List<string>
        {
            $"data: workspace {BenchContext.ReadWorkspace} with {options.ReadWorkspaceProcedures:#,0} procedures and as many activity rows; "
            + $"caller 'user' (Member); 16 clients, {options.Warmup.TotalSeconds:0.##} s warm-up, {options.Duration.TotalSeconds:0.##} s measured, "
            + $"{options.Runs} run(s) per figure",
            $"with row-level security: role {names.App}, each batch starts with set_config('tcstudio.user_id' …, true), "
            + "set_config('tcstudio.workspace_id' …, true), as the API sends it; without: the bench cluster's superuser, the same batch",
        };
        foreach (var read in reads)
        {
            BenchContext.Log($"  {read.Label}: with and without row-level security @ 16 clients");
            var withPolicies = new List<LoadResult>();
            var withoutPolicies = new List<LoadResult>();
            for (var run = 0; run < options.Runs; run++)
            {
                Task<LoadResult> Measure(NpgsqlDataSource source, bool settings) => ClosedLoop.RunAsync(16, options.Warmup, options.Duration,
                    (_, sequence) => RunBatchAsync(source, settings ? Settings(users.UserId, workspace) : null,
                        read.Statements(workspace, users.UserId, (int)sequence)));
                // Alternate which goes first, so neither always meets a warmer cache.
                if (run % 2 == 0)
                {
                    withPolicies.Add(await Measure(subject, settings: true));
                    withoutPolicies.Add(await Measure(bypassing, settings: false));
                }
                else
                {
                    withoutPolicies.Add(await Measure(bypassing, settings: false));
                    withPolicies.Add(await Measure(subject, settings: true));
                }
            }
            rows.Add(HttpMeasure.Row(Number, $"{read.Label}: app role under row-level security",
                new HttpMeasure.Comparison(withPolicies, withoutPolicies, [], []),
                "the same batch, bypassing row-level security", "≥ 0.9× (costs < 10 %)", (_, _, ratio) => ratio >= 0.9));
        }
        return new ScenarioOutcome(rows, workload);
    }

    private static NpgsqlBatchCommand Settings(Guid user, Guid workspace) => new(
        "SELECT set_config('tcstudio.user_id', $1, true), set_config('tcstudio.workspace_id', $2, true)")
    {
        Parameters = { new NpgsqlParameter { Value = user.ToString("D") }, new NpgsqlParameter { Value = workspace.ToString("D") } },
    };

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        return command;
    }

    /// <summary>One round trip, one implicit transaction: the settings hold for exactly the statements after them.</summary>
    private static async Task RunBatchAsync(NpgsqlDataSource source, NpgsqlBatchCommand? settings, NpgsqlBatchCommand[] statements)
    {
        await using var connection = await source.OpenConnectionAsync();
        await using var batch = new NpgsqlBatch(connection);
        if (settings is not null) batch.BatchCommands.Add(settings);
        foreach (var statement in statements) batch.BatchCommands.Add(statement);
        await using var reader = await batch.ExecuteReaderAsync();
        do
        {
            while (await reader.ReadAsync())
            {
            }
        }
        while (await reader.NextResultAsync());
    }
}
