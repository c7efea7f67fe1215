using System.Security.Claims;
using System.Text.Json;
using TcStudio.Api.Activities;
using TcStudio.Api.Auth;
using TcStudio.Api.Environments;
using TcStudio.Api.Workspaces;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Api.Procedures;

public sealed record ProcedureSummary(Guid Id, string Name, string Status, DateTimeOffset? PublishedAt, DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt)
{
    /// <summary>The draft's ETag (as GET …/procedures/{name} sends it), for If-Match on a later update or publish.</summary>
    [System.Text.Json.Serialization.JsonPropertyName("etag")]
    public string? ETag { get; init; }
}

/// <summary>A draft as stored in the system database.</summary>
public sealed record ProcedureDraft(Guid Id, string Name, string Status, string Sql, string? SqlPublished, DateTimeOffset? PublishedAt,
    Guid CreatedBy, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string? PublishedChecksum = null);

/// <param name="State">deployed, not_deployed, or unavailable (then <paramref name="Error"/> says why).</param>
public sealed record ProcedureEnvironmentState(string Environment, string Provider, string State, string? Checksum, DateTimeOffset? DeployedAt,
    string? DeployedBy, bool? MatchesDraft, string? Error);

/// <summary>GET .../procedures/{name}: the draft and, per environment, what its database holds.</summary>
public sealed record ProcedureDetails(Guid Id, string Name, string Status, string Sql, string? SqlPublished, DateTimeOffset? PublishedAt,
    Guid CreatedBy, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, IReadOnlyList<ProcedureEnvironmentState> Environments,
    string? PublishedChecksum = null);

public sealed record CreateProcedureRequest(string Name, string Sql);

public sealed record UpdateProcedureRequest(string Sql);

public sealed record ProcedureListRequest(string? Search, string? Status, int? Page, int? PageSize);

public sealed record ValidationResponse(bool Valid, string Dialect, string? Environment, IReadOnlyList<SqlProblem> Errors);

public sealed record PublishResponse(string Name, string Environment, string Checksum, DateTimeOffset DeployedAt, DateTimeOffset PublishedAt);

public sealed record ExecuteRequest(Dictionary<string, JsonElement>? Parameters = null, int? TimeoutSeconds = null, int? MaxRows = null);

/// <summary>
/// Stored-procedure drafts (kept in the system database, ETag from the row version, full-text search) and their
/// life in the workspace databases: validate, publish (deploy, then record; compensate if recording fails) and
/// execute (typed parameters, server-side timeout, row cap, an activity per execution without parameter values).
/// </summary>
public static class ProceduresApi
{
    public const int MaxSqlLength = 512 * 1024;
    public const int MaxSearchLength = 200;

    public static RouteGroupBuilder MapProceduresApi(this RouteGroupBuilder api)
    {
        var procedures = api.MapWorkspaceScope().MapGroup("/procedures").WithTags("Procedures")
            .AnswersWorkspaceDatabaseFailures();
        procedures.MapGet("/", ListProcedures).RequireWorkspacePermission(WorkspacePermission.Read)
            .WithSummary("Drafts, paged; ?search= uses the full-text index (name and SQL), ?status=draft|published.");
        procedures.MapPost("/", CreateProcedure).RequireWorkspacePermission(WorkspacePermission.EditDrafts)
            .WithSummary("Create a draft: {name, sql} (not deployed anywhere until published).");
        procedures.MapGet("/{name}", GetProcedure).RequireWorkspacePermission(WorkspacePermission.Read).WaitsOnWorkspaceDatabase()
            .WithSummary("The draft, and per environment the deployed checksum, time and whether it matches the draft.");
        procedures.MapPut("/{name}", UpdateProcedure).RequireWorkspacePermission(WorkspacePermission.EditDrafts).WithPreconditions()
            .WithSummary("Update the draft only (If-Match with the ETag guards against overwriting someone else's edit).");
        procedures.MapDelete("/{name}", DeleteProcedure).RequireWorkspacePermission(WorkspacePermission.EditDrafts).WaitsOnWorkspaceDatabase()
            .WithPreconditions()
            .WithSummary("Drop it from every environment it was published to, then delete the draft.");
        procedures.MapPost("/{name}/validate", ValidateProcedure).RequireWorkspacePermission(WorkspacePermission.EditDrafts)
            .WaitsOnWorkspaceDatabase()
            .WithSummary("Validate the stored draft: ?env= against an environment's database, or ?dialect=tsql|postgres statically.");
        procedures.MapPost("/{name}/publish", PublishProcedure).RequireWorkspacePermission(WorkspacePermission.Publish).WaitsOnWorkspaceDatabase()
            .WithPreconditions()
            .WithSummary("Validate, deploy to ?env=, then record the publish; the deploy is undone if recording fails. "
                + "If-Match with the draft's ETag publishes exactly the version that was reviewed (412 when it changed since).");
        procedures.MapPost("/{name}/execute", ExecuteProcedure).RequireWorkspacePermission(WorkspacePermission.ExecuteNonProduction)
            .WaitsOnWorkspaceDatabase()
            .WithSummary("Execute the published procedure in ?env= with typed parameters, a timeout and a row cap.");
        return api;
    }

    // ---- Drafts ----

    public static async Task<Results<Ok<PagedList<ProcedureSummary>>, ValidationProblem>> ListProcedures(
        [AsParameters] ProcedureListRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var paging = new PageRequest(request.Page, request.PageSize);
        var errors = paging.Validate()
            .Text("search", request.Search, MaxSearchLength)
            .OneOf("status", request.Status, ProcedureStatus.All, required: false);
        if (errors.Any) return errors.ToProblem();

        var search = string.IsNullOrWhiteSpace(request.Search) ? null : request.Search.Trim();
        if (request.Status is null)
        {
            // The hot paths (a page, a search): direct reads (no EF query pipeline) of the SQL EF writes below.
            var ct = http.RequestAborted;
            int count;
            await using (var read = search is null ? await DirectRead.ExecuteAsync(db, CountAllSql, ct, workspace.Id)
                : await DirectRead.ExecuteAsync(db, CountMatchingSql, ct, workspace.Id, search))
            {
                await read.Reader.ReadAsync(ct);
                count = read.Reader.GetInt32(0);
            }
            var page = new List<ProcedureSummary>(Math.Clamp(count - paging.Skip, 0, paging.Size));
            await using (var read = search is null ? await DirectRead.ExecuteAsync(db, PageAllSql, ct, workspace.Id, paging.Size, paging.Skip)
                : await DirectRead.ExecuteAsync(db, PageMatchingSql, ct, workspace.Id, search, paging.Size, paging.Skip))
            {
                var reader = read.Reader;
                while (await reader.ReadAsync(ct))
                {
                    page.Add(new ProcedureSummary(reader.GetGuid(0), reader.GetString(1), reader.GetString(2),
                        reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTimeOffset>(3), reader.GetFieldValue<DateTimeOffset>(4),
                        reader.GetFieldValue<DateTimeOffset>(5)) { ETag = ETags.From(reader.GetFieldValue<uint>(6)) });
                }
            }
            return TypedResults.Ok(paging.ToPage(page, count, http.Request));
        }

        var query = db.StoredProcedures.AsNoTracking().Where(p => p.WorkspaceId == workspace.Id);
        if (request.Status is { } status) query = query.Where(p => p.Status == status);
        IOrderedQueryable<StoredProcedure> ordered;
        if (search is not null)
        {
            // websearch_to_tsquery accepts whatever a person types (quotes, or, -not) without syntax errors.
            query = query.Where(p => p.SearchVector!.Matches(EF.Functions.WebSearchToTsQuery("simple", search)));
            ordered = query.OrderByDescending(p => p.SearchVector!.Rank(EF.Functions.WebSearchToTsQuery("simple", search)))
                .ThenBy(p => p.Name.ToLower());
        }
        else
        {
            // lower(name) is what the unique index (workspace_id, lower(name)) is ordered by: pages come straight off
            // the index, however many procedures the workspace holds (and the order is case-insensitive, as names are).
            ordered = query.OrderBy(p => p.Name.ToLower());
        }

        var total = await query.CountAsync(http.RequestAborted);
        var items = await ordered.Skip(paging.Skip).Take(paging.Size)
            .Select(p => new ProcedureSummary(p.Id, p.Name, p.Status, p.PublishedAt, p.CreatedAt, p.UpdatedAt) { ETag = ETags.From(p.Version) })
            .ToListAsync(http.RequestAborted);
        return TypedResults.Ok(paging.ToPage(items, total, http.Request));
    }

    private const string CountAllSql = "SELECT count(*)::int FROM stored_procedures AS s WHERE s.workspace_id = $1";

    private const string PageAllSql = """
        SELECT s.id, s.name, s.status, s.published_at, s.created_at, s.updated_at, s.xmin FROM stored_procedures AS s
        WHERE s.workspace_id = $1 ORDER BY lower(s.name) LIMIT $2 OFFSET $3
        """;

    private const string CountMatchingSql = """
        SELECT count(*)::int FROM stored_procedures AS s
        WHERE s.workspace_id = $1 AND s.search_vector @@ websearch_to_tsquery('simple', $2)
        """;

    private const string PageMatchingSql = """
        SELECT s.id, s.name, s.status, s.published_at, s.created_at, s.updated_at, s.xmin FROM stored_procedures AS s
        WHERE s.workspace_id = $1 AND s.search_vector @@ websearch_to_tsquery('simple', $2)
        ORDER BY ts_rank(s.search_vector, websearch_to_tsquery('simple', $2)) DESC, lower(s.name) LIMIT $3 OFFSET $4
        """;

    public static async Task<Results<Created<ProcedureDraft>, ValidationProblem>> CreateProcedure(
        CreateProcedureRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var errors = new FieldErrors()
            .Pattern("name", request.Name, FieldErrors.ProcedureName(),
                "an identifier, optionally schema-qualified (schema.name), of at most 128 characters")
            .Text("sql", request.Sql, MaxSqlLength, required: true);
        if (errors.Any) return errors.ToProblem();

        var procedure = new StoredProcedure
        {
            WorkspaceId = workspace.Id,
            Name = request.Name,
            SqlDraft = request.Sql,
            CreatedBy = workspace.UserId,
        };
        db.StoredProcedures.Add(procedure);
        db.AddActivity(workspace.Id, workspace.UserId, "procedure.created", EntityTypes.Procedure, procedure.Id, new { procedure.Name });
        await db.SaveChangesAsync(http.RequestAborted); // the name taken in any case → 23505 → 409 naming "name"

        http.Response.Headers.ETag = ETags.From(procedure.Version);
        return TypedResults.Created($"/api/workspaces/{workspace.Slug}/procedures/{procedure.Name}", ToDraft(procedure));
    }

    public static async Task<Results<Ok<ProcedureDetails>, ProblemHttpResult>> GetProcedure(string name, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases)
    {
        var procedure = await FindAsync(db, workspace.Id, name, http.RequestAborted);
        if (procedure is null) return NotFound(name);
        var environments = await db.WorkspaceEnvironments.AsNoTracking().Where(e => e.WorkspaceId == workspace.Id)
            .OrderBy(e => e.Name).ToListAsync(http.RequestAborted);

        // Each environment answers from its own pool, in parallel; one that is down says so without failing the rest.
        var draftChecksum = Checksums.Of(procedure.SqlDraft);
        var states = await Task.WhenAll(environments.Select(async environment =>
        {
            var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
            try
            {
                var deployment = await databases.ReadDeploymentAsync(target, procedure.Name, http.RequestAborted);
                return deployment is null
                    ? new ProcedureEnvironmentState(environment.Name, environment.Provider, "not_deployed", null, null, null, null, null)
                    : new ProcedureEnvironmentState(environment.Name, environment.Provider, "deployed", deployment.Checksum, deployment.DeployedAt,
                        deployment.DeployedBy, string.Equals(deployment.Checksum, draftChecksum, StringComparison.OrdinalIgnoreCase), null);
            }
            catch (WorkspaceDatabaseException e)
            {
                return new ProcedureEnvironmentState(environment.Name, environment.Provider, "unavailable", null, null, null, null, e.Message);
            }
        }));

        http.Response.Headers.ETag = ETags.From(procedure.Version);
        return TypedResults.Ok(new ProcedureDetails(procedure.Id, procedure.Name, procedure.Status, procedure.SqlDraft, procedure.SqlPublished,
            procedure.PublishedAt, procedure.CreatedBy, procedure.CreatedAt, procedure.UpdatedAt, states, procedure.PublishedChecksum));
    }

    public static async Task<Results<Ok<ProcedureDraft>, ValidationProblem, ProblemHttpResult>> UpdateProcedure(string name,
        UpdateProcedureRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var errors = new FieldErrors().Text("sql", request.Sql, MaxSqlLength, required: true);
        if (errors.Any) return errors.ToProblem();

        var procedure = await FindAsync(db, workspace.Id, name, http.RequestAborted, tracked: true);
        if (procedure is null) return NotFound(name);
        if (ETags.CheckPreconditions(http.Request, procedure.Version, "procedure") is { } refused) return refused;

        if (procedure.SqlDraft != request.Sql)
        {
            procedure.SqlDraft = request.Sql;
            db.AddActivity(workspace.Id, workspace.UserId, "procedure.updated", EntityTypes.Procedure, procedure.Id, new { procedure.Name });
            await db.SaveChangesAsync(http.RequestAborted); // changed meanwhile → DbUpdateConcurrencyException → 412
        }
        http.Response.Headers.ETag = ETags.From(procedure.Version);
        return TypedResults.Ok(ToDraft(procedure));
    }

    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteProcedure(string name, CurrentWorkspace workspace, HttpContext http,
        TcStudioDbContext db, WorkspaceDatabaseService databases)
    {
        var procedure = await FindAsync(db, workspace.Id, name, http.RequestAborted, tracked: true);
        if (procedure is null) return NotFound(name);
        if (ETags.CheckPreconditions(http.Request, procedure.Version, "procedure") is { } refused) return refused;
        if (procedure.Status == ProcedureStatus.Published && !workspace.Can(WorkspacePermission.Publish))
        {
            return Problems.Forbidden($"'{procedure.Name}' is published; removing it from the environments needs the right to publish.");
        }

        var droppedFrom = new List<string>();
        if (procedure.Status == ProcedureStatus.Published)
        {
            // Every environment first: one that cannot be reached stops the delete (503 naming it), so nothing is
            // left deployed without its draft.
            var environments = await db.WorkspaceEnvironments.AsNoTracking().Where(e => e.WorkspaceId == workspace.Id)
                .OrderBy(e => e.Name).ToListAsync(http.RequestAborted);
            foreach (var environment in environments)
            {
                var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
                var dropped = await databases.DropProcedureAsync(target, procedure.Name, http.RequestAborted);
                if (dropped) droppedFrom.Add(environment.Name);
            }
        }

        db.StoredProcedures.Remove(procedure);
        db.AddActivity(workspace.Id, workspace.UserId, "procedure.deleted", EntityTypes.Procedure, procedure.Id,
            new { procedure.Name, droppedFrom });
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.NoContent();
    }

    // ---- Validate, publish, execute ----

    public static async Task<Results<Ok<ValidationResponse>, ValidationProblem, ProblemHttpResult>> ValidateProcedure(string name, string? env,
        string? dialect, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases)
    {
        var errors = new FieldErrors();
        if ((env is null) == (dialect is null)) errors.Add("env", "Give either ?env=<environment> or ?dialect=tsql|postgres.");
        errors.OneOf("dialect", dialect, ["tsql", "postgres"], required: false);
        if (errors.Any) return errors.ToProblem();

        var procedure = await FindAsync(db, workspace.Id, name, http.RequestAborted);
        if (procedure is null) return NotFound(name);

        if (dialect is not null)
        {
            // Static: no database at all, so editors and CI can check drafts anywhere.
            var validation = databases.ValidateStatically(dialect == "tsql" ? WorkspaceProviders.SqlServer : WorkspaceProviders.Postgres,
                procedure.Name, procedure.SqlDraft);
            return TypedResults.Ok(new ValidationResponse(validation.IsValid, dialect, null, validation.Errors));
        }

        var environment = await EnvironmentsApi.FindAsync(db, workspace.Id, env!, http.RequestAborted);
        if (environment is null) return EnvironmentsApi.NotFound(env!);
        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        var result = await databases.ValidateAsync(target, procedure.Name, procedure.SqlDraft, http.RequestAborted);
        return TypedResults.Ok(new ValidationResponse(result.IsValid, DialectOf(environment.Provider), environment.Name, result.Errors));
    }

    public static async Task<Results<Ok<PublishResponse>, ValidationProblem, ProblemHttpResult>> PublishProcedure(string name, string? env,
        CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases, TimeProvider clock,
        ILoggerFactory loggers)
    {
        if (env is null) return new FieldErrors().Add("env", "'env' is required: the environment to publish to.").ToProblem();
        var procedure = await FindAsync(db, workspace.Id, name, http.RequestAborted);
        if (procedure is null) return NotFound(name);
        // The reviewer's ETag names the draft they read: what is deployed below is the text of this very version
        // (read once, here), so a later edit can neither slip in nor be published unseen.
        if (ETags.CheckPreconditions(http.Request, procedure.Version, "procedure draft") is { } refused) return refused;
        var environment = await EnvironmentsApi.FindAsync(db, workspace.Id, env, http.RequestAborted);
        if (environment is null) return EnvironmentsApi.NotFound(env);

        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        var draft = procedure.SqlDraft;
        var staticCheck = databases.ValidateStatically(environment.Provider, procedure.Name, draft);
        if (!staticCheck.IsValid) return InvalidDraft(environment.Name, staticCheck);
        await databases.EnsureSchemaAsync(target, requireCurrent: true, http.RequestAborted);

        var deployedBy = http.User.FindFirstValue(TcStudioClaims.Username) ?? workspace.UserId.ToString();
        var logger = loggers.CreateLogger(typeof(ProceduresApi));
        // From the deploy on, the workspace database runs the new version: the system database records it, or the
        // service undoes the deploy, whatever the caller does meanwhile (hence no cancellation token for the record).
        PublishResponse? published = null;
        var outcome = await databases.PublishAsync(target, procedure.Name, draft, deployedBy, async deployment =>
        {
            var publishedAt = clock.GetUtcNow();
            published = new PublishResponse(procedure.Name, environment.Name, deployment.Checksum, deployment.DeployedAt, publishedAt);
            try
            {
                db.ChangeTracker.Clear();
                var entity = await db.StoredProcedures.SingleAsync(p => p.Id == procedure.Id, CancellationToken.None);
                entity.Status = ProcedureStatus.Published;
                entity.SqlPublished = draft;
                entity.PublishedAt = publishedAt;
                entity.PublishedChecksum = deployment.Checksum;
                db.AddActivity(workspace.Id, workspace.UserId, "procedure.published", EntityTypes.Procedure, procedure.Id,
                    new { procedure.Name, environment = environment.Name, deployment.Checksum });
                var response = published;
                IdempotentRequests.RecordWithNextSave(http, () => TypedResults.Ok(response));
                await db.SaveChangesAsync(CancellationToken.None);
            }
            catch
            {
                db.ChangeTracker.Clear();
                throw;
            }
        }, http.RequestAborted);

        switch (outcome)
        {
            case PublishOutcome.Invalid invalid:
                return InvalidDraft(environment.Name, invalid.Validation);
            case PublishOutcome.NotRecorded { UndoFailure: { } undoFailure } failed:
                logger.LogError(failed.SystemFailure, "Recording the publish of {Procedure} to {Environment} failed; undoing the deploy",
                    procedure.Name, environment.Name);
                logger.LogCritical(undoFailure, "Undoing the deploy of {Procedure} in {Environment} failed too", procedure.Name, environment.Name);
                return PublishFailed(500, environment.Name, compensated: false,
                    $"'{procedure.Name}' was deployed to environment '{environment.Name}' but the system database could not record it, "
                    + "and restoring the previous definition failed as well: the environment runs the new version unrecorded. Publish again once the "
                    + "system database is healthy.");
            case PublishOutcome.NotRecorded failed:
                logger.LogError(failed.SystemFailure, "Recording the publish of {Procedure} to {Environment} failed; the deploy was undone",
                    procedure.Name, environment.Name);
                var restored = failed.Deployment.PreviousDefinition is null ? "the new procedure was dropped"
                    : "its previous definition was restored";
                return PublishFailed(ApiExceptionHandler.StatusOf(failed.SystemFailure), environment.Name, compensated: true,
                    $"'{procedure.Name}' was deployed to environment '{environment.Name}', but the system database could not record the publish "
                    + $"({Describe(failed.SystemFailure)}); {restored} there, so nothing changed. Try again.");
            default:
                return TypedResults.Ok(published!);
        }
    }

    public static async Task<Results<Ok<ExecutionResult>, ValidationProblem, ProblemHttpResult>> ExecuteProcedure(string name, string? env,
        ExecuteRequest? request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases,
        ExecutionSlots slots)
    {
        request ??= new ExecuteRequest(); // no body: no parameters, default limits
        var limits = databases.Options;
        var errors = new FieldErrors()
            .Range("timeoutSeconds", request.TimeoutSeconds, 1, WorkspacesOptions.WholeSeconds(limits.MaxExecuteTimeout))
            .Range("maxRows", request.MaxRows, 1, limits.MaxRows);
        if (env is null) errors.Add("env", "'env' is required: the environment to execute in.");
        if (errors.Any) return errors.ToProblem();

        var procedure = await FindAsync(db, workspace.Id, name, http.RequestAborted);
        if (procedure is null) return NotFound(name);
        var environment = await EnvironmentsApi.FindAsync(db, workspace.Id, env!, http.RequestAborted);
        if (environment is null) return EnvironmentsApi.NotFound(env!);
        if (!workspace.Can(WorkspacePermissions.ExecutePermissionFor(environment)))
        {
            return Problems.Forbidden($"Environment '{environment.Name}' is a production environment: executing there needs the production right "
                + $"(workspace Admin or Owner), which your role in workspace '{workspace.Slug}' does not have.");
        }
        if (procedure.Status != ProcedureStatus.Published)
        {
            return Problems.Conflict($"'{procedure.Name}' has never been published; publish it before executing it.",
                code: ErrorCodes.ProcedureNotPublished);
        }

        using var slot = slots.TryEnter(workspace.Id);
        if (slot is null)
        {
            http.Response.Headers.RetryAfter = slots.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return ErrorCodes.Problem(ErrorCodes.ProcedureBusy, StatusCodes.Status429TooManyRequests, "Too many executions at once.",
                detail: $"Workspace '{workspace.Slug}' already runs {slots.Limit} execution(s) at once (Workspaces:Limits:ConcurrentExecutions); "
                    + $"try again in {slots.RetryAfterSeconds} s. Nothing was executed.");
        }

        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        var executionLimits = new ExecutionLimits(request.TimeoutSeconds is { } seconds ? TimeSpan.FromSeconds(seconds)
            : limits.DefaultExecuteTimeout,
            request.MaxRows ?? limits.DefaultMaxRows, Math.Max(1, limits.MaxResultBytes));
        var started = System.Diagnostics.Stopwatch.StartNew();
        ExecutionResult? result = null;
        Exception? failure = null;
        try
        {
            await databases.EnsureSchemaAsync(target, requireCurrent: false, http.RequestAborted);
            result = await databases.ExecuteAsync(target, procedure.Name, request.Parameters ?? [], executionLimits, http.RequestAborted);
            return TypedResults.Ok(result);
        }
        catch (Exception e)
        {
            failure = e;
            throw;
        }
        finally
        {
            // Who, where, how long, how many rows, whether it worked: never the parameter values.
            db.ChangeTracker.Clear();
            db.AddActivity(workspace.Id, workspace.UserId, "procedure.executed", EntityTypes.Procedure, procedure.Id, new
            {
                procedure.Name,
                environment = environment.Name,
                durationMs = result?.DurationMs ?? started.ElapsedMilliseconds,
                rows = result?.ResultSets.Sum(s => s.Rows.Count) ?? 0,
                success = failure is null,
                outcome = failure switch
                {
                    null => "succeeded",
                    OperationCanceledException => "cancelled",
                    WorkspaceTimeoutException => "timed_out",
                    WorkspaceSqlException sql => $"error {sql.Number}",
                    WorkspaceDatabaseUnavailableException or WorkspaceServerNotReadyException => "unavailable",
                    WorkspaceDatabaseException => "refused",
                    _ => "failed",
                },
            });
            if (failure is null && result is not null) IdempotentRequests.RecordWithNextSave(http, () => TypedResults.Ok(result));
            await db.SaveChangesAsync(CancellationToken.None);
        }
    }

    // ---- Helpers ----

    private static Task<StoredProcedure?> FindAsync(TcStudioDbContext db, Guid workspaceId, string name, CancellationToken ct, bool tracked = false)
    {
        if (!FieldErrors.ProcedureName().IsMatch(name)) return Task.FromResult<StoredProcedure?>(null);
        var lowered = name.ToLowerInvariant();
        // lower(name) = ... uses the unique index on (workspace_id, lower(name)).
        var query = db.StoredProcedures.Where(p => p.WorkspaceId == workspaceId && p.Name.ToLower() == lowered);
        return (tracked ? query : query.AsNoTracking()).SingleOrDefaultAsync(ct);
    }

    private static ProblemHttpResult NotFound(string name) => Problems.NotFound($"Procedure '{name}'");

    private static ProcedureDraft ToDraft(StoredProcedure p) =>
        new(p.Id, p.Name, p.Status, p.SqlDraft, p.SqlPublished, p.PublishedAt, p.CreatedBy, p.CreatedAt, p.UpdatedAt, p.PublishedChecksum);

    private static string DialectOf(string provider) => provider == WorkspaceProviders.SqlServer ? "tsql" : "postgres";

    private static ProblemHttpResult InvalidDraft(string environment, SqlValidation validation) =>
        ErrorCodes.Problem(ErrorCodes.ProcedureInvalidSql, StatusCodes.Status422UnprocessableEntity, "The draft does not validate.",
            $"Nothing was deployed to environment '{environment}': {validation.Errors.Count} problem(s), see errors.",
            new Dictionary<string, object?> { ["environment"] = environment, ["errors"] = validation.Errors });

    private static ProblemHttpResult PublishFailed(int status, string environment, bool compensated, string detail) =>
        TypedResults.Problem(statusCode: status, title: "Publishing failed in the system database.", detail: detail,
            extensions: new Dictionary<string, object?>
            {
                ["environment"] = environment,
                ["failedSide"] = "system",
                ["compensated"] = compensated,
            });

    private static string Describe(Exception e) => (e.InnerException ?? e) switch
    {
        Npgsql.PostgresException pg => $"{pg.SqlState}: {pg.MessageText}",
        DbUpdateConcurrencyException => "the procedure changed meanwhile",
        var inner => inner.Message,
    };
}
