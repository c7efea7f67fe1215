using System.Diagnostics;
using Npgsql;

namespace TcStudio.Benchmarks.Scenarios;

/// <summary>
/// The baselines' hand-written SQL: what the API's endpoints do, as one would write it with Npgsql directly — the
/// same statements, in the same order, with the same results read, minus everything between HTTP and the database.
/// Statements are prepared automatically (the product's Max Auto Prepare applies to the baseline's data source too).
/// </summary>
public sealed class RawQueries(NpgsqlDataSource dataSource)
{
    /// <summary>The workspace-scope check every /api/workspaces/{slug}/… request makes: the workspace and the caller's role.</summary>
    public const string Access = """
        SELECT w.id, (SELECT m.role FROM workspace_members m WHERE m.workspace_id = w.id AND m.user_id = $2 LIMIT 1)
        FROM workspaces w WHERE w.slug = $1 AND w.deleted_at IS NULL LIMIT 1
        """;

    public const string WorkspaceDetails = """
        SELECT w.id, w.name, w.slug, w.description, w.settings, w.member_count, w.created_at, w.updated_at, w.xmin,
               (SELECT m.role FROM workspace_members m WHERE m.workspace_id = w.id AND m.user_id = $2 LIMIT 1)
        FROM workspaces w WHERE w.id = $1
        """;

    public const string ProcedureCount = "SELECT count(*) FROM stored_procedures WHERE workspace_id = $1";

    public const string ProcedurePage = """
        SELECT id, name, status, created_at, updated_at, xmin FROM stored_procedures
        WHERE workspace_id = $1 ORDER BY lower(name), id LIMIT 50 OFFSET $2
        """;

    public const string SearchCount = """
        SELECT count(*) FROM stored_procedures WHERE workspace_id = $1 AND search_vector @@ plainto_tsquery('simple', $2)
        """;

    public const string SearchPage = """
        SELECT id, name, status, created_at, updated_at, xmin FROM stored_procedures
        WHERE workspace_id = $1 AND search_vector @@ plainto_tsquery('simple', $2) ORDER BY lower(name), id LIMIT 50
        """;

    /// <summary>
    /// Newest first: the first page of a workspace's activity with who did it (51 rows: the 51st says whether there is more).
    /// </summary>
    public const string ActivityFirstPage = """
        SELECT a.id, a.action, a.entity_type, a.entity_id, (SELECT u.username FROM users u WHERE u.id = a.user_id LIMIT 1),
               a.details, a.created_at
        FROM activities a WHERE a.workspace_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT 51
        """;

    /// <summary>Keyset: the page after the last row seen, (created_at, id).</summary>
    public const string ActivityNextPage = """
        SELECT a.id, a.action, a.entity_type, a.entity_id, (SELECT u.username FROM users u WHERE u.id = a.user_id LIMIT 1),
               a.details, a.created_at
        FROM activities a WHERE a.workspace_id = $1 AND (a.created_at, a.id) < ($2, $3) ORDER BY a.created_at DESC, a.id DESC LIMIT 51
        """;

    public static readonly string[] WorkspaceGetStatements = [Access, WorkspaceDetails];
    public static readonly string[] ListStatements = [Access, ProcedureCount, ProcedurePage];
    public static readonly string[] SearchStatements = [Access, SearchCount, SearchPage];

    public async Task<Guid> AccessAsync(NpgsqlConnection connection, string slug, Guid userId)
    {
        await using var command = new NpgsqlCommand(Access, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = slug });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = userId });
        await using var reader = await command.ExecuteReaderAsync();
        if (!await reader.ReadAsync()) throw new InvalidOperationException($"No workspace {slug}.");
        var id = reader.GetGuid(0);
        if (reader.IsDBNull(1)) throw new InvalidOperationException($"Not a member of {slug}.");
        _ = reader.GetString(1);
        return id;
    }

    public async Task GetWorkspaceAsync(string slug, Guid userId)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var workspace = await AccessAsync(connection, slug, userId);
        await using var command = new NpgsqlCommand(WorkspaceDetails, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = workspace });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = userId });
        await using var reader = await command.ExecuteReaderAsync();
        if (await Sql.DrainAsync(reader) != 1) throw new InvalidOperationException("Workspace vanished.");
    }

    public async Task ListProceduresAsync(string slug, Guid userId, int page)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var workspace = await AccessAsync(connection, slug, userId);
        await ScalarAsync(connection, ProcedureCount, workspace);
        await using var command = new NpgsqlCommand(ProcedurePage, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = workspace });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = (page - 1) * 50 });
        await using var reader = await command.ExecuteReaderAsync();
        await Sql.DrainAsync(reader);
    }

    public async Task SearchProceduresAsync(string slug, Guid userId, string term)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var workspace = await AccessAsync(connection, slug, userId);
        await ScalarAsync(connection, SearchCount, workspace, term);
        await using var command = new NpgsqlCommand(SearchPage, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = workspace });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = term });
        await using var reader = await command.ExecuteReaderAsync();
        await Sql.DrainAsync(reader);
    }

    /// <summary>One activity page: the first, or the one after <paramref name="after"/> (keyset).</summary>
    public async Task ActivityPageAsync(string slug, Guid userId, (DateTimeOffset At, Guid Id)? after)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var workspace = await AccessAsync(connection, slug, userId);
        await using var command = new NpgsqlCommand(after is null ? ActivityFirstPage : ActivityNextPage, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = workspace });
        if (after is { } key)
        {
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = key.At });
            command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = key.Id });
        }
        await using var reader = await command.ExecuteReaderAsync();
        await Sql.DrainAsync(reader);
    }

    /// <summary>The keyset position a client holds when it asks for page <paramref name="page"/> (the last row of the page before).</summary>
    public static async Task<(DateTimeOffset At, Guid Id)> KeyBeforePageAsync(string connectionString, string slug, int page)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT a.created_at, a.id FROM activities a JOIN workspaces w ON w.id = a.workspace_id WHERE w.slug = $1
            ORDER BY a.created_at DESC, a.id DESC OFFSET $2 LIMIT 1
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = slug });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = (page - 1) * 50 - 1 });
        await using var reader = await command.ExecuteReaderAsync();
        if (!await reader.ReadAsync()) throw new InvalidOperationException($"Workspace {slug} has fewer than {page} activity pages.");
        return (reader.GetFieldValue<DateTimeOffset>(0), reader.GetGuid(1));
    }

    private static async Task ScalarAsync(NpgsqlConnection connection, string sql, Guid workspace, string? term = null)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = workspace });
        if (term is not null) command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = term });
        await command.ExecuteScalarAsync();
    }
}

/// <summary>
/// Counts the SQL statements the product sends to one database while a probe request runs (from Npgsql's traces,
/// in this process), so each HTTP measurement can say how many round trips a request costs.
/// </summary>
public sealed class StatementProbe : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly List<string> _statements = [];

    public StatementProbe(string database)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (!activity.TagObjects.Any(t => t.Value as string == database)) return;
                var text = activity.GetTagItem("db.query.text") as string ?? activity.GetTagItem("db.statement") as string;
                if (text is null) return;
                lock (_statements) _statements.Add(text);
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public IReadOnlyList<string> Statements
    {
        get { lock (_statements) return _statements.ToList(); }
    }

    /// <summary>"3 statements: SELECT, SELECT, SELECT" — the first word of each, for the report.</summary>
    public string Summary()
    {
        var statements = Statements;
        var words = statements.Select(s => s.TrimStart().Split([' ', '\n', '\r', '\t'], 2)[0].ToUpperInvariant());
        return $"{statements.Count} statement{(statements.Count == 1 ? "" : "s")} ({string.Join(", ", words)})";
    }

    public void Dispose() => _listener.Dispose();
}
