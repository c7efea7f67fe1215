using System.Collections.Concurrent;
using System.Net;
using System.Security.Claims;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.IdentityModel.Tokens;
using Npgsql;
using NpgsqlTypes;
using TcStudio.LocalPostgres;

namespace TcStudio.Benchmarks.Baseline;

/// <summary>
/// The fair HTTP baseline of scenarios 2 and 3 (issue 25): a minimal ASP.NET Core server written by hand, with raw
/// Npgsql (an <see cref="NpgsqlDataSource"/> with the product's connection settings, auto-prepare included),
/// System.Text.Json source generation and JwtBearer with the product's validation parameters and signing key (the
/// same token works on both). It connects as the same app role and sends the same row-level-security and timeout
/// settings (<c>set_config(…, true)</c>) in the same batch as each statement, checks the session like the product
/// (cached per user for the same interval) and the workspace membership on every request, and answers the six
/// measured routes with the product's response shapes (<see cref="BaselineConformance"/> compares them byte for byte).
/// One pooled connection per request; the same statements and round trips as the product sends: it measures what
/// the product's own layers cost, not a different query plan.
/// </summary>
public sealed partial class BaselineServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly NpgsqlDataSource _dataSource;

    private BaselineServer(WebApplication app, NpgsqlDataSource dataSource, string baseUrl)
    {
        _app = app;
        _dataSource = dataSource;
        BaseUrl = baseUrl;
    }

    public string BaseUrl { get; }

    public static async Task<BaselineServer> StartAsync(NpgsqlDataSource dataSource, SymmetricSecurityKey signingKey, TimeSpan lockTimeout,
        TimeSpan statementTimeout, TimeSpan sessionCheckInterval)
    {
        var port = LocalPostgresCluster.FindFreePort();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));
        builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.TypeInfoResolverChain.Insert(0, BaselineJsonContext.Default));
        var handlers = new Handlers(dataSource, Timeouts(lockTimeout, statementTimeout), sessionCheckInterval);
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(jwt =>
        {
            jwt.MapInboundClaims = false;
            jwt.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = "tcstudio",
                ValidAudience = "tcstudio-api",
                IssuerSigningKey = signingKey,
                ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
                ClockSkew = TimeSpan.FromSeconds(30),
                NameClaimType = "name",
                RoleClaimType = "role",
            };
            jwt.Events = new JwtBearerEvents
            {
                OnTokenValidated = async context =>
                {
                    if (!await handlers.ValidateSessionAsync(context.Principal!, context.HttpContext.RequestAborted))
                    {
                        context.Fail("The token was revoked.");
                    }
                },
            };
        });
        builder.Services.AddAuthorization();

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        var workspace = app.MapGroup("/api/workspaces/{slug}").RequireAuthorization();
        workspace.MapGet("/", handlers.GetWorkspaceAsync);
        workspace.MapGet("/procedures", handlers.ListProceduresAsync);
        workspace.MapPost("/procedures", handlers.CreateProcedureAsync);
        workspace.MapPut("/procedures/{name}", handlers.UpdateProcedureAsync);
        workspace.MapGet("/activities", handlers.ListActivitiesAsync);
        await app.StartAsync();
        return new BaselineServer(app, dataSource, $"http://127.0.0.1:{port}");
    }

    private static string Timeouts(TimeSpan lockTimeout, TimeSpan statementTimeout)
    {
        var parts = new List<string>();
        if (lockTimeout > TimeSpan.Zero) parts.Add($"set_config('lock_timeout', '{(long)Math.Ceiling(lockTimeout.TotalMilliseconds)}ms', true)");
        if (statementTimeout > TimeSpan.Zero)
        {
            parts.Add($"set_config('statement_timeout', '{(long)Math.Ceiling(statementTimeout.TotalMilliseconds)}ms', true)");
        }
        return parts.Count == 0 ? "" : string.Join(", ", parts) + ", ";
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        await _dataSource.DisposeAsync();
    }

    /// <summary>The handlers, with what they share (data source, settings statement, session cache).</summary>
    private sealed partial class Handlers(NpgsqlDataSource dataSource, string timeouts, TimeSpan sessionCheckInterval)
    {
        // The settings statement: timeouts, then the caller and the workspace, parameters $1 and $2 ('' until known).
        private readonly string _settings = $"SELECT {timeouts}set_config('tcstudio.user_id', $1, true), "
            + "set_config('tcstudio.workspace_id', $2, true)";

        private const string AccessSql = """
            SELECT w.id, (SELECT m.role FROM workspace_members AS m WHERE m.workspace_id = w.id AND m.user_id = $1 LIMIT 1)
            FROM workspaces AS w WHERE w.deleted_at IS NULL AND w.slug = $2 LIMIT 1
            """;

        private const string DetailsSql = """
            SELECT w.id, w.name, w.slug, w.description, w.settings, w.member_count, w.created_at, w.updated_at, w.xmin,
                   (SELECT m.role FROM workspace_members AS m WHERE m.workspace_id = w.id AND m.user_id = $2 LIMIT 1)
            FROM workspaces AS w WHERE w.id = $1 LIMIT 2
            """;

        private const string CountSql = "SELECT count(*)::int FROM stored_procedures AS s WHERE s.workspace_id = $1";

        private const string PageSql = """
            SELECT s.id, s.name, s.status, s.published_at, s.created_at, s.updated_at, s.xmin FROM stored_procedures AS s
            WHERE s.workspace_id = $1 ORDER BY lower(s.name) LIMIT $2 OFFSET $3
            """;

        private const string SearchCountSql = """
            SELECT count(*)::int FROM stored_procedures AS s WHERE s.workspace_id = $1 AND s.search_vector @@ websearch_to_tsquery('simple', $2)
            """;

        private const string SearchPageSql = """
            SELECT s.id, s.name, s.status, s.published_at, s.created_at, s.updated_at, s.xmin FROM stored_procedures AS s
            WHERE s.workspace_id = $1 AND s.search_vector @@ websearch_to_tsquery('simple', $2)
            ORDER BY ts_rank(s.search_vector, websearch_to_tsquery('simple', $2)) DESC, lower(s.name) LIMIT $3 OFFSET $4
            """;

        private const string ActivitiesSql = """
            SELECT a.id, a.action, a.entity_type, a.entity_id, (SELECT u.username FROM users AS u WHERE u.id = a.user_id LIMIT 1),
                   a.details, a.created_at
            FROM activities AS a WHERE a.workspace_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT $2
            """;

        private const string ActivitiesAfterSql = """
            SELECT a.id, a.action, a.entity_type, a.entity_id, (SELECT u.username FROM users AS u WHERE u.id = a.user_id LIMIT 1),
                   a.details, a.created_at
            FROM activities AS a WHERE a.workspace_id = $1 AND a.created_at <= $2 AND (a.created_at, a.id) < ($2, $3)
            ORDER BY a.created_at DESC, a.id DESC LIMIT $4
            """;

        private const string FindProcedureSql = """
            SELECT s.id, s.name, s.status, s.sql_draft, s.sql_published, s.published_at, s.created_by, s.created_at, s.updated_at,
                   s.published_checksum, s.xmin
            FROM stored_procedures AS s WHERE s.workspace_id = $1 AND lower(s.name) = $2 LIMIT 2
            """;

        private const string InsertProcedureSql = """
            INSERT INTO stored_procedures (id, workspace_id, name, status, sql_draft, created_by, created_at, updated_at)
            VALUES ($1, $2, $3, 'draft', $4, $5, $6, $6) RETURNING xmin
            """;

        private const string UpdateProcedureSql = """
            UPDATE stored_procedures SET sql_draft = $1, updated_at = $2 WHERE id = $3 AND xmin = $4 RETURNING xmin
            """;

        private const string InsertActivitySql = """
            INSERT INTO activities (id, workspace_id, user_id, action, entity_type, entity_id, details, created_at)
            VALUES ($1, $2, $3, $4, 'procedure', $5, $6, $7)
            """;

        private const string SessionSql = """
            SELECT u.security_stamp, r.name FROM users AS u JOIN roles AS r ON r.id = u.role_id
            WHERE u.deleted_at IS NULL AND u.id = $1 AND u.is_active LIMIT 1
            """;

        private sealed record Session(Guid Stamp, string Role, DateTime CheckedAt);

        private readonly ConcurrentDictionary<Guid, Session> _sessions = new();

        /// <summary>The product's session check: user active, stamp current, role refreshed; cached per user.</summary>
        public async Task<bool> ValidateSessionAsync(ClaimsPrincipal principal, CancellationToken ct)
        {
            if (!Guid.TryParse(principal.FindFirstValue("sub"), out var userId) || !Guid.TryParse(principal.FindFirstValue("stamp"), out var stamp))
            {
                return false;
            }
            if (!_sessions.TryGetValue(userId, out var session) || DateTime.UtcNow - session.CheckedAt >= sessionCheckInterval)
            {
                await using var connection = await dataSource.OpenConnectionAsync(ct);
                await using var batch = Batch(connection, "", "", Command(SessionSql, userId));
                await using var reader = await ReadAfterSettingsAsync(batch, ct);
                if (!await reader.ReadAsync(ct))
                {
                    _sessions.TryRemove(userId, out _);
                    return false;
                }
                session = _sessions[userId] = new Session(reader.GetGuid(0), reader.GetString(1), DateTime.UtcNow);
            }
            if (session.Stamp != stamp) return false;
            if (principal.Identity is ClaimsIdentity identity && principal.FindFirstValue("role") != session.Role)
            {
                foreach (var stale in identity.FindAll("role").ToList()) identity.RemoveClaim(stale);
                identity.AddClaim(new Claim("role", session.Role));
            }
            return true;
        }

        private sealed record Access(Guid WorkspaceId, Guid UserId, string UserText, string WorkspaceText);

        /// <summary>The workspace and the caller's membership (404 for a non-member, as the product), or the answer to give.</summary>
        private async Task<(Access? Access, IResult? Refusal)> AccessAsync(NpgsqlConnection connection, HttpContext http, string slug,
            bool edit, CancellationToken ct)
        {
            var userId = Guid.Parse(http.User.FindFirstValue("sub")!);
            var userText = userId.ToString("D");
            Guid workspaceId;
            string? role;
            await using (var batch = Batch(connection, userText, "", Command(AccessSql, userId, slug)))
            await using (var reader = await ReadAfterSettingsAsync(batch, ct))
            {
                if (!await reader.ReadAsync(ct)) return (null, NotFound($"Workspace '{slug}'"));
                workspaceId = reader.GetGuid(0);
                role = reader.IsDBNull(1) ? null : reader.GetString(1);
            }
            var isAdmin = http.User.IsInRole("Admin");
            if (role is null && !isAdmin) return (null, NotFound($"Workspace '{slug}'"));
            if (edit && !isAdmin && role is not ("Owner" or "Admin" or "Member"))
            {
                return (null, Results.Problem(statusCode: 403, title: "Forbidden.",
                    detail: $"Your role in workspace '{slug}' ({role}) does not allow this."));
            }
            return (new Access(workspaceId, userId, userText, workspaceId.ToString("D")), null);
        }

        public async Task<IResult> GetWorkspaceAsync(string slug, HttpContext http)
        {
            var ct = http.RequestAborted;
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            var (access, refusal) = await AccessAsync(connection, http, slug, edit: false, ct);
            if (access is null) return refusal!;
            await using var batch = Batch(connection, access.UserText, access.WorkspaceText, Command(DetailsSql, access.WorkspaceId, access.UserId));
            await using var reader = await ReadAfterSettingsAsync(batch, ct);
            await reader.ReadAsync(ct);
            var workspace = new BaselineWorkspace(reader.GetGuid(0), reader.GetString(1), reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3),
                reader.GetFieldValue<JsonElement>(4), reader.GetInt32(5), reader.IsDBNull(9) ? null : reader.GetString(9),
                reader.GetFieldValue<DateTimeOffset>(6), reader.GetFieldValue<DateTimeOffset>(7));
            http.Response.Headers.ETag = $"\"{reader.GetFieldValue<uint>(8)}\"";
            return Results.Json(workspace, BaselineJsonContext.Http.BaselineWorkspace);
        }

        public async Task<IResult> ListProceduresAsync(string slug, string? search, int? page, int? pageSize, HttpContext http)
        {
            var ct = http.RequestAborted;
            var pageNumber = page ?? 1;
            var size = pageSize ?? 50;
            if (pageNumber is < 1 or > 100_000 || size is < 1 or > 200 || search is { Length: > 200 })
            {
                return Results.ValidationProblem(new Dictionary<string, string[]> { ["page"] = ["out of range"] });
            }
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            var (access, refusal) = await AccessAsync(connection, http, slug, edit: false, ct);
            if (access is null) return refusal!;
            var term = string.IsNullOrWhiteSpace(search) ? null : search.Trim();

            int total;
            await using (var count = Batch(connection, access.UserText, access.WorkspaceText,
                term is null ? Command(CountSql, access.WorkspaceId) : Command(SearchCountSql, access.WorkspaceId, term)))
            await using (var reader = await ReadAfterSettingsAsync(count, ct))
            {
                await reader.ReadAsync(ct);
                total = reader.GetInt32(0);
            }
            var skip = (pageNumber - 1) * size;
            var items = new List<BaselineProcedureSummary>(size);
            await using (var batch = Batch(connection, access.UserText, access.WorkspaceText, term is null
                ? Command(PageSql, access.WorkspaceId, size, skip)
                : Command(SearchPageSql, access.WorkspaceId, term, size, skip)))
            await using (var reader = await ReadAfterSettingsAsync(batch, ct))
            {
                while (await reader.ReadAsync(ct))
                {
                    items.Add(new BaselineProcedureSummary(reader.GetGuid(0), reader.GetString(1), reader.GetString(2),
                        reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTimeOffset>(3), reader.GetFieldValue<DateTimeOffset>(4),
                        reader.GetFieldValue<DateTimeOffset>(5))
                    {
                        ETag = $"\"{reader.GetFieldValue<uint>(6)}\"",
                    });
                }
            }
            var next = skip + items.Count < total && items.Count > 0 ? LinkWith(http.Request, "page", (pageNumber + 1).ToString()) : null;
            return Results.Json(new BaselineProcedurePage(items, pageNumber, size, total) { Next = next },
                BaselineJsonContext.Http.BaselineProcedurePage);
        }

        public async Task<IResult> ListActivitiesAsync(string slug, string? cursor, int? limit, HttpContext http)
        {
            var ct = http.RequestAborted;
            var size = limit ?? 50;
            (DateTimeOffset At, Guid Id)? after = null;
            if (cursor is not null)
            {
                if (DecodeCursor(cursor) is { } decoded)
                {
                    after = decoded;
                }
                else
                {
                    return Results.ValidationProblem(
                        new Dictionary<string, string[]> { ["cursor"] = ["'cursor' is not a cursor this API returned."] });
                }
            }
            if (size is < 1 or > 200) return Results.ValidationProblem(new Dictionary<string, string[]> { ["limit"] = ["out of range"] });
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            var (access, refusal) = await AccessAsync(connection, http, slug, edit: false, ct);
            if (access is null) return refusal!;
            var items = new List<BaselineActivity>(size + 1);
            await using (var batch = Batch(connection, access.UserText, access.WorkspaceText, after is { } key
                ? Command(ActivitiesAfterSql, access.WorkspaceId, key.At, key.Id, size + 1)
                : Command(ActivitiesSql, access.WorkspaceId, size + 1)))
            await using (var reader = await ReadAfterSettingsAsync(batch, ct))
            {
                while (await reader.ReadAsync(ct))
                {
                    items.Add(new BaselineActivity(reader.GetGuid(0), reader.GetString(1), reader.GetString(2),
                        reader.IsDBNull(3) ? null : reader.GetGuid(3),
                        reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetFieldValue<JsonElement>(5),
                        reader.GetFieldValue<DateTimeOffset>(6)));
                }
            }
            string? nextCursor = null;
            if (items.Count > size)
            {
                items.RemoveAt(items.Count - 1);
                nextCursor = EncodeCursor(items[^1].CreatedAt, items[^1].Id);
            }
            return Results.Json(new BaselineActivityPage(items)
            {
                NextCursor = nextCursor,
                Next = nextCursor is null ? null : LinkWith(http.Request, "cursor", nextCursor),
            }, BaselineJsonContext.Http.BaselineActivityPage);
        }

        public async Task<IResult> CreateProcedureAsync(string slug, HttpContext http)
        {
            var ct = http.RequestAborted;
            var request = await http.Request.ReadFromJsonAsync(BaselineJsonContext.Http.BaselineCreateRequest, ct);
            if (request is null || !ProcedureName().IsMatch(request.Name ?? "") || string.IsNullOrEmpty(request.Sql)
                || request.Sql.Length > 512 * 1024)
            {
                return Results.ValidationProblem(new Dictionary<string, string[]> { ["name"] = ["invalid"] });
            }
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var transaction = await connection.BeginTransactionAsync(ct);
            var (access, refusal) = await AccessAsync(connection, http, slug, edit: true, ct);
            if (access is null) return refusal!;
            var id = Guid.CreateVersion7();
            var now = Now();
            uint version;
            try
            {
                await using var batch = Batch(connection, access.UserText, access.WorkspaceText,
                    Command(InsertProcedureSql, id, access.WorkspaceId, request.Name!, request.Sql, access.UserId, now),
                    ActivityCommand(access, "procedure.created", id, request.Name!, now));
                await using var reader = await ReadAfterSettingsAsync(batch, ct);
                await reader.ReadAsync(ct);
                version = reader.GetFieldValue<uint>(0);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                return Results.Problem(statusCode: 409, title: "Conflict.", detail: $"A procedure named '{request.Name}' already exists.");
            }
            await transaction.CommitAsync(ct);
            http.Response.Headers.ETag = $"\"{version}\"";
            http.Response.Headers.Location = $"/api/workspaces/{slug}/procedures/{request.Name}";
            return Results.Json(new BaselineDraft(id, request.Name!, "draft", request.Sql, null, null, access.UserId, now, now),
                BaselineJsonContext.Http.BaselineDraft, statusCode: 201);
        }

        public async Task<IResult> UpdateProcedureAsync(string slug, string name, HttpContext http)
        {
            var ct = http.RequestAborted;
            var request = await http.Request.ReadFromJsonAsync(BaselineJsonContext.Http.BaselineUpdateRequest, ct);
            if (request is null || string.IsNullOrEmpty(request.Sql) || request.Sql.Length > 512 * 1024)
            {
                return Results.ValidationProblem(new Dictionary<string, string[]> { ["sql"] = ["invalid"] });
            }
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var transaction = await connection.BeginTransactionAsync(ct);
            var (access, refusal) = await AccessAsync(connection, http, slug, edit: true, ct);
            if (access is null) return refusal!;
            if (!ProcedureName().IsMatch(name)) return NotFound($"Procedure '{name}'");

            BaselineDraft draft;
            uint version;
            await using (var find = Batch(connection, access.UserText, access.WorkspaceText,
                Command(FindProcedureSql, access.WorkspaceId, name.ToLowerInvariant())))
            await using (var reader = await ReadAfterSettingsAsync(find, ct))
            {
                if (!await reader.ReadAsync(ct)) return NotFound($"Procedure '{name}'");
                draft = new BaselineDraft(reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetFieldValue<DateTimeOffset>(5),
                    reader.GetGuid(6), reader.GetFieldValue<DateTimeOffset>(7), reader.GetFieldValue<DateTimeOffset>(8),
                    reader.IsDBNull(9) ? null : reader.GetString(9));
                version = reader.GetFieldValue<uint>(10);
            }
            var ifMatch = http.Request.Headers.IfMatch.ToString();
            if (ifMatch.Length > 0 && ifMatch != "*" && ifMatch != $"\"{version}\"")
            {
                return Results.Problem(statusCode: 412, title: "Precondition failed.", detail: "The procedure changed since you read it.");
            }
            if (draft.Sql != request.Sql)
            {
                var now = Now();
                await using var batch = Batch(connection, access.UserText, access.WorkspaceText,
                    Command(UpdateProcedureSql, request.Sql, now, draft.Id, version),
                    ActivityCommand(access, "procedure.updated", draft.Id, draft.Name, now));
                await using var reader = await ReadAfterSettingsAsync(batch, ct);
                if (!await reader.ReadAsync(ct))
                {
                    return Results.Problem(statusCode: 412, title: "Precondition failed.", detail: "The procedure changed meanwhile.");
                }
                version = reader.GetFieldValue<uint>(0);
                draft = draft with { Sql = request.Sql, UpdatedAt = now };
            }
            await transaction.CommitAsync(ct);
            http.Response.Headers.ETag = $"\"{version}\"";
            return Results.Json(draft, BaselineJsonContext.Http.BaselineDraft);
        }

        private static NpgsqlBatchCommand ActivityCommand(Access access, string action, Guid procedure, string name, DateTimeOffset now)
        {
            var command = Command(InsertActivitySql, Guid.CreateVersion7(), access.WorkspaceId, access.UserId, action, procedure);
            command.Parameters.Add(new NpgsqlParameter<string>
            {
                TypedValue = JsonSerializer.Serialize(new BaselineActivityDetails(name), BaselineJsonContext.Http.BaselineActivityDetails),
                NpgsqlDbType = NpgsqlDbType.Jsonb,
            });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
            return command;
        }

        /// <summary>The settings statement, then the statements, in one batch (one round trip, one implicit transaction outside BEGIN).</summary>
        private NpgsqlBatch Batch(NpgsqlConnection connection, string user, string workspace, params NpgsqlBatchCommand[] commands)
        {
            var batch = new NpgsqlBatch(connection);
            var settings = new NpgsqlBatchCommand(_settings);
            settings.Parameters.Add(new NpgsqlParameter<string> { TypedValue = user });
            settings.Parameters.Add(new NpgsqlParameter<string> { TypedValue = workspace });
            batch.BatchCommands.Add(settings);
            foreach (var command in commands) batch.BatchCommands.Add(command);
            return batch;
        }

        private static async Task<NpgsqlDataReader> ReadAfterSettingsAsync(NpgsqlBatch batch, CancellationToken ct)
        {
            var reader = await batch.ExecuteReaderAsync(ct);
            await reader.NextResultAsync(ct);
            return reader;
        }

        private static NpgsqlBatchCommand Command(string sql, params object[] values)
        {
            var command = new NpgsqlBatchCommand(sql);
            foreach (var value in values)
            {
                command.Parameters.Add(value switch
                {
                    Guid g => new NpgsqlParameter<Guid> { TypedValue = g },
                    string s => new NpgsqlParameter<string> { TypedValue = s },
                    int i => new NpgsqlParameter<int> { TypedValue = i },
                    uint u => new NpgsqlParameter<uint> { TypedValue = u, NpgsqlDbType = NpgsqlDbType.Xid },
                    DateTimeOffset d => new NpgsqlParameter<DateTimeOffset> { TypedValue = d },
                    _ => throw new ArgumentException($"No parameter mapping for {value.GetType()}"),
                });
            }
            return command;
        }

        /// <summary>Now at timestamptz precision (microseconds), so what a write returns equals what a later read returns.</summary>
        private static DateTimeOffset Now()
        {
            var now = DateTimeOffset.UtcNow;
            return now.AddTicks(-(now.Ticks % 10));
        }

        private static IResult NotFound(string what) =>
            Results.Problem(statusCode: 404, title: "Not found.", detail: $"{what} was not found.");

        private static string LinkWith(HttpRequest request, string name, string value)
        {
            var query = request.Query.Where(p => !string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase))
                .SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string?>(p.Key, v)))
                .Append(new KeyValuePair<string, string?>(name, value));
            return UriHelper.BuildAbsolute(request.Scheme, request.Host, request.PathBase, request.Path, QueryString.Create(query));
        }

        // The product's cursor format: a format byte (1), the UTC ticks and the id, big-endian, base64url.
        private static string EncodeCursor(DateTimeOffset at, Guid id)
        {
            Span<byte> bytes = stackalloc byte[25];
            bytes[0] = 1;
            System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes[1..], at.UtcTicks);
            id.TryWriteBytes(bytes[9..], bigEndian: true, out _);
            return System.Buffers.Text.Base64Url.EncodeToString(bytes);
        }

        private static (DateTimeOffset At, Guid Id)? DecodeCursor(string text)
        {
            if (text.Length is 0 or > 64 || !System.Buffers.Text.Base64Url.IsValid(text)) return null;
            var bytes = System.Buffers.Text.Base64Url.DecodeFromChars(text);
            if (bytes.Length != 25 || bytes[0] != 1) return null;
            var ticks = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(1));
            if (ticks < DateTimeOffset.MinValue.UtcTicks || ticks > DateTimeOffset.MaxValue.UtcTicks) return null;
            return (new DateTimeOffset(ticks, TimeSpan.Zero), new Guid(bytes.AsSpan(9, 16), bigEndian: true));
        }

        [GeneratedRegex("^(?=.{1,128}\\z)([A-Za-z_][A-Za-z0-9_]*\\.)?[A-Za-z_][A-Za-z0-9_]*\\z")]
        private static partial Regex ProcedureName();
    }
}
