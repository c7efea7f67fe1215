using Microsoft.Extensions.Options;
using TcStudio.Api.Activities;
using TcStudio.Api.Auth;
using TcStudio.Api.Workspaces;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Api.Environments;

public sealed record WorkspaceServerSummary(string Name, string Provider);

public sealed record EnvironmentDetails(Guid Id, string Name, string Server, string Provider, string DatabaseName, int SchemaVersion,
    string Status, string? LastError, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, bool IsProduction);

/// <param name="Create">
/// True (the default): create the environment's own new database, which must not exist. False: attach an existing
/// database; reserved to system Admins (the same as POST .../environments/{name}/adopt), 403 for anyone else.
/// </param>
/// <param name="IsProduction">Executing in a production environment needs the production right (workspace Admin and above).</param>
public sealed record CreateEnvironmentRequest(string Name, string Server, string DatabaseName, bool Create = true, bool IsProduction = false);

/// <summary>An existing database for a new environment {env}: unclaimed, or detached since its environment went.</summary>
public sealed record AdoptEnvironmentRequest(string Server, string DatabaseName, bool IsProduction = false);

/// <summary>PATCH: absent (or null) fields stay as they are.</summary>
public sealed record UpdateEnvironmentRequest(bool? IsProduction = null);

public sealed record AppliedMigrationSummary(int Version, string Name, double DurationMs);

/// <param name="Converted">True when this migrate converted an environment made by an earlier version (per-environment roles, marker, claim).</param>
public sealed record MigrateEnvironmentResponse(string Environment, IReadOnlyList<AppliedMigrationSummary> Applied, int SchemaVersion, string Status,
    bool Converted = false, IReadOnlyList<string>? Notes = null);

/// <param name="Circuit">closed, open or half-open (closed when nothing is cached for it).</param>
public sealed record EnvironmentStatusResponse(string Environment, string Server, string Provider, string DatabaseName, bool Reachable,
    int? SchemaVersion, int ExpectedSchemaVersion, string? SchemaState, IReadOnlyList<string> PendingMigrations, string Circuit,
    string Status, string? LastError);

/// <summary>
/// Registered servers and a workspace's environments. Users pick a registered server by name and a database name;
/// hosts and credentials stay in configuration. Creating an environment always creates its own database; attaching an
/// existing one (adopt) is for system Admins only and is recorded. A database belongs to one environment, enforced by
/// its claim in the system database and the marker inside it (EnvironmentProvisioning). A workspace's environments
/// share one provider (its SQL dialect): the first sets it. Creating, adopting, migrating an environment and dropping
/// its database wait on the workspace server, so these endpoints hold no system-database transaction while they do.
/// </summary>
public static partial class EnvironmentsApi
{
    public static RouteGroupBuilder MapEnvironmentsApi(this RouteGroupBuilder api)
    {
        api.MapGet("/workspace-servers", ListServers).WithTags("Environments")
            .WithSummary("The registered workspace database servers: names and providers (never connection strings).");

        var environments = api.MapWorkspaceScope().MapGroup("/environments").WithTags("Environments")
            .AnswersWorkspaceDatabaseFailures();
        environments.MapGet("/", ListEnvironments).RequireWorkspacePermission(WorkspacePermission.Read)
            .WithSummary("The workspace's environments (an offset-paged list, by name).");
        environments.MapPost("/", CreateEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments).WaitsOnWorkspaceDatabase()
            .WithSummary("Create an environment on a registered server with a new database of its own (roles, marker, base schema).");
        environments.MapPost("/{env}/adopt", AdoptEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments)
            .WaitsOnWorkspaceDatabase()
            .WithSummary("System Admins: create environment {env} on an existing database that no environment holds (recorded in the activity log).");
        environments.MapGet("/{env}", GetEnvironment).RequireWorkspacePermission(WorkspacePermission.Read).WithSummary("One environment.");
        environments.MapPatch("/{env}", UpdateEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments)
            .WithSummary("Change isProduction (executing in a production environment needs the production right).");
        environments.MapDelete("/{env}", DeleteEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments)
            .WaitsOnWorkspaceDatabase()
            .WithSummary("Delete the environment; its database is kept, detached (still claimed), unless ?dropDatabase=true.");
        environments.MapPost("/{env}/migrate", MigrateEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments)
            .WaitsOnWorkspaceDatabase()
            .WithSummary("Apply pending base-schema migrations (and repair the roles and grants; converts an environment made "
                + "by an earlier version).");
        environments.MapGet("/{env}/status", GetStatus).RequireWorkspacePermission(WorkspacePermission.Read).WaitsOnWorkspaceDatabase()
            .WithSummary("Reachability, schema version, pending migrations, circuit state and last error.");
        return api;
    }

    /// <summary>The servers in configuration: one page holding them all, in the offset-list shape.</summary>
    public static Ok<PagedList<WorkspaceServerSummary>> ListServers(WorkspaceServerRegistry servers) =>
        TypedResults.Ok(ListLinks.Whole<WorkspaceServerSummary>(servers.Servers.Select(s => new WorkspaceServerSummary(s.Name, s.Provider))
            .ToList()));

    public static async Task<Results<Ok<PagedList<EnvironmentDetails>>, ValidationProblem>> ListEnvironments([AsParameters] PageRequest paging,
        CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        if (paging.Validate() is { Any: true } errors) return errors.ToProblem();
        var environments = db.WorkspaceEnvironments.AsNoTracking().Where(e => e.WorkspaceId == workspace.Id);
        var total = await environments.CountAsync(http.RequestAborted);
        var items = await environments.OrderBy(e => e.Name).ThenBy(e => e.Id).Skip(paging.Skip).Take(paging.Size)
            .Select(e => ToDetails(e)).ToListAsync(http.RequestAborted);
        return TypedResults.Ok(paging.ToPage(items, total, http.Request));
    }

    public static async Task<Results<Ok<EnvironmentDetails>, ProblemHttpResult>> GetEnvironment(string env, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db)
    {
        return await FindAsync(db, workspace.Id, env, http.RequestAborted) is { } environment ? TypedResults.Ok(ToDetails(environment))
            : NotFound(env);
    }

    public static async Task<Results<Ok<EnvironmentDetails>, ProblemHttpResult>> UpdateEnvironment(string env, UpdateEnvironmentRequest request,
        CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db)
    {
        var environment = await FindAsync(db, workspace.Id, env, http.RequestAborted, tracked: true);
        if (environment is null) return NotFound(env);

        if (request.IsProduction is { } isProduction && isProduction != environment.IsProduction)
        {
            environment.IsProduction = isProduction;
            db.AddActivity(workspace.Id, workspace.UserId, "environment.updated", EntityTypes.Environment, environment.Id,
                new { environment.Name, isProduction });
            await db.SaveChangesAsync(http.RequestAborted);
        }
        return TypedResults.Ok(ToDetails(environment));
    }

    public static async Task<Results<Created<EnvironmentDetails>, ValidationProblem, ProblemHttpResult>> CreateEnvironment(
        CreateEnvironmentRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db,
        WorkspaceServerRegistry servers, WorkspaceDatabaseService databases, EnvironmentProvisioning provisioning, IOptions<QuotaOptions> quotas)
    {
        var errors = Validate(request.Name, request.Server, request.DatabaseName, servers, databases, out var server);
        if (errors.Any) return errors.ToProblem();
        if (await EnvironmentQuotaProblemAsync(workspace, http, db, quotas.Value) is { } overQuota) return overQuota;
        if (!request.Create)
        {
            if (!http.User.IsSystemAdmin())
            {
                return Problems.Forbidden("Attaching an existing database (create: false) is reserved to system Admins "
                    + $"(POST /api/workspaces/{workspace.Slug}/environments/{request.Name}/adopt). Omit 'create' (or set it to true) to create the "
                    + "environment's own new database.");
            }
            return await AdoptAsync(request.Name, server!, request.DatabaseName, request.IsProduction, workspace, http, db, provisioning);
        }

        var result = await provisioning.CreateAsync(workspace.Id, workspace.Slug, request.Name, server!, request.DatabaseName, request.IsProduction,
            http.RequestAborted);
        db.ChangeTracker.Clear();
        db.AddActivity(workspace.Id, workspace.UserId, "environment.created", EntityTypes.Environment, result.Environment.Id,
            new { result.Environment.Name, result.Environment.Server, result.Environment.DatabaseName, createdDatabase = true,
                schemaVersion = result.SchemaVersion });
        return await SaveCreatedAsync(result.Environment, workspace, http, db);
    }

    public static async Task<Results<Created<EnvironmentDetails>, ValidationProblem, ProblemHttpResult>> AdoptEnvironment(string env,
        AdoptEnvironmentRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db, WorkspaceServerRegistry servers,
        WorkspaceDatabaseService databases, EnvironmentProvisioning provisioning)
    {
        if (!http.User.IsSystemAdmin())
        {
            return Problems.Forbidden("Only a system Admin may attach an existing database to an environment; create the environment with "
                + "a new database instead.");
        }
        var errors = Validate(env, request.Server, request.DatabaseName, servers, databases, out var server, nameField: "env");
        if (errors.Any) return errors.ToProblem();
        return await AdoptAsync(env, server!, request.DatabaseName, request.IsProduction, workspace, http, db, provisioning);
    }

    private static async Task<Results<Created<EnvironmentDetails>, ValidationProblem, ProblemHttpResult>> AdoptAsync(string name,
        WorkspaceServer server,
        string database, bool isProduction, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db, EnvironmentProvisioning provisioning)
    {
        var result = await provisioning.AdoptAsync(workspace.Id, workspace.Slug, name, server, database, isProduction, http.RequestAborted);
        db.ChangeTracker.Clear();
        db.AddActivity(workspace.Id, workspace.UserId, "environment.adopted", EntityTypes.Environment, result.Environment.Id,
            new { result.Environment.Name, result.Environment.Server, result.Environment.DatabaseName, schemaVersion = result.SchemaVersion,
                notes = result.Notes });
        return await SaveCreatedAsync(result.Environment, workspace, http, db);
    }

    /// <summary>The activity staged by the caller, the idempotency record and the 201, in one SaveChanges.</summary>
    private static async Task<Created<EnvironmentDetails>> SaveCreatedAsync(WorkspaceEnvironment environment, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db)
    {
        var location = $"/api/workspaces/{workspace.Slug}/environments/{environment.Name}";
        IdempotentRequests.RecordWithNextSave(http, () => TypedResults.Created(location, ToDetails(environment)));
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.Created(location, ToDetails(environment));
    }

    private static FieldErrors Validate(string name, string server, string database, WorkspaceServerRegistry servers,
        WorkspaceDatabaseService databases,
        out WorkspaceServer? found, string nameField = "name")
    {
        var errors = new FieldErrors()
            .Pattern(nameField, name, EnvironmentName(), "1–63 lowercase letters, digits or hyphens, starting with a letter or digit")
            .Pattern("databaseName", database, WorkspaceDatabaseNames.Pattern(), "letters, digits and '_', starting with a letter or '_'");
        found = server is null ? null : servers.Find(server);
        if (server is null)
        {
            errors.Add("server", "'server' is required.");
        }
        else if (found is null)
        {
            errors.Add("server", $"'{server}' is not a registered server (GET /api/workspace-servers lists them).");
        }
        if (found is not null && !errors.Any
            && databases.FindDatabaseNameProblem(database, found) is { } problem)
        {
            errors.Add("databaseName", char.ToUpperInvariant(problem[0]) + problem[1..]);
        }
        return errors;
    }

    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteEnvironment(string env, bool? dropDatabase, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db, EnvironmentProvisioning provisioning)
    {
        var environment = await FindAsync(db, workspace.Id, env, http.RequestAborted, tracked: true);
        if (environment is null) return NotFound(env);

        var removal = await provisioning.PrepareRemovalAsync(environment, workspace.Slug, dropDatabase == true, http.User.IsSystemAdmin(),
            http.RequestAborted);
        db.WorkspaceEnvironments.Remove(environment);
        db.AddActivity(workspace.Id, workspace.UserId, "environment.deleted", EntityTypes.Environment, environment.Id,
            new { environment.Name, environment.Server, environment.DatabaseName,
                droppedDatabase = removal == EnvironmentProvisioning.Removal.Dropped,
                database = removal.ToString().ToLowerInvariant() });
        await db.SaveChangesAsync(CancellationToken.None); // the claim's removal or detachment, the row and its activity: one transaction
        return TypedResults.NoContent();
    }

    public static async Task<Results<Ok<MigrateEnvironmentResponse>, ProblemHttpResult>> MigrateEnvironment(string env, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db, EnvironmentProvisioning provisioning, TimeProvider clock)
    {
        var environment = await FindAsync(db, workspace.Id, env, http.RequestAborted);
        if (environment is null) return NotFound(env);

        EnvironmentProvisioning.Result result;
        try
        {
            result = await provisioning.MigrateAsync(environment, workspace.Slug, progress: null, http.RequestAborted);
        }
        catch (WorkspaceDatabaseException failure)
        {
            var (status, error) = WorkspaceEnvironmentState.From(failure);
            await WorkspaceEnvironmentState.RecordAsync(db, environment.Id, null, status, error, clock, CancellationToken.None);
            throw;
        }

        var converted = result.Outcome is EnvironmentProvisioning.Outcome.Converted;
        var migrated = new MigrateEnvironmentResponse(environment.Name,
            result.Applied.Select(s => new AppliedMigrationSummary(s.Migration.Version, s.Migration.Name,
                Math.Round(s.Duration.TotalMilliseconds, 1))).ToList(),
            result.SchemaVersion, EnvironmentStatus.Ready, converted, result.Notes);
        db.ChangeTracker.Clear();
        if (result.Applied.Count > 0 || result.Outcome != EnvironmentProvisioning.Outcome.Migrated || result.Notes.Count > 0)
        {
            db.AddActivity(workspace.Id, workspace.UserId, converted ? "environment.converted" : "environment.migrated", EntityTypes.Environment,
                environment.Id,
                new { environment.Name, applied = result.Applied.Select(s => s.Migration.Id).ToList(), schemaVersion = result.SchemaVersion,
                    notes = result.Notes });
        }
        IdempotentRequests.RecordWithNextSave(http, () => TypedResults.Ok(migrated));
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.Ok(migrated);
    }

    public static async Task<Results<Ok<EnvironmentStatusResponse>, ProblemHttpResult>> GetStatus(string env, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases, TimeProvider clock)
    {
        var environment = await FindAsync(db, workspace.Id, env, http.RequestAborted);
        if (environment is null) return NotFound(env);

        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        var expected = databases.MigrationCount(environment.Provider);
        WorkspaceSchemaStatus? schema = null;
        string status;
        string? lastError;
        try
        {
            schema = await databases.GetSchemaStatusAsync(target, http.RequestAborted, refresh: true);
            (status, lastError) = WorkspaceEnvironmentState.From(schema);
        }
        catch (WorkspaceDatabaseException failure) when (failure is WorkspaceDatabaseUnavailableException or WorkspaceTargetException
            or WorkspaceServerNotReadyException)
        {
            (status, lastError) = WorkspaceEnvironmentState.From(failure);
        }

        if (status != environment.Status || lastError != environment.LastError || (schema is not null && schema.Version != environment.SchemaVersion))
        {
            await WorkspaceEnvironmentState.RecordAsync(db, environment.Id, schema?.Version, status, lastError, clock, CancellationToken.None);
        }
        return TypedResults.Ok(new EnvironmentStatusResponse(environment.Name, environment.Server, environment.Provider, environment.DatabaseName,
            Reachable: schema is not null, schema?.Version, expected, schema?.StateName, schema?.Pending ?? [],
            databases.CircuitStateOf(workspace.Id, environment.Name) ?? "closed", status, lastError));
    }

    /// <summary>
    /// 409 when the workspace has its quota of environments (system Admins are exempt). Checked before the database
    /// is created: concurrent creates in one workspace may pass together, by at most the number of requests in flight.
    /// </summary>
    private static async Task<ProblemHttpResult?> EnvironmentQuotaProblemAsync(CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db,
        QuotaOptions quotas)
    {
        if (http.User.IsSystemAdmin()) return null;
        var count = await db.WorkspaceEnvironments.CountAsync(e => e.WorkspaceId == workspace.Id, http.RequestAborted);
        if (count < quotas.EnvironmentsPerWorkspace) return null;
        return ErrorCodes.Problem(ErrorCodes.EnvironmentQuotaReached, StatusCodes.Status409Conflict, "Quota reached.",
             $"Workspace '{workspace.Slug}' already has {count} environment(s), its quota (Quotas:EnvironmentsPerWorkspace = "
                + $"{quotas.EnvironmentsPerWorkspace}). Delete an environment, or ask a system Admin. Nothing was created.",
            new Dictionary<string, object?> { ["quota"] = "environmentsPerWorkspace", ["limit"] = quotas.EnvironmentsPerWorkspace });
    }

    internal static Task<WorkspaceEnvironment?> FindAsync(TcStudioDbContext db, Guid workspaceId, string name, CancellationToken ct,
        bool tracked = false)
    {
        var query = db.WorkspaceEnvironments.Where(e => e.WorkspaceId == workspaceId && e.Name == name);
        return (tracked ? query : query.AsNoTracking()).SingleOrDefaultAsync(ct);
    }

    internal static ProblemHttpResult NotFound(string env) => Problems.NotFound($"Environment '{env}'");

    private static EnvironmentDetails ToDetails(WorkspaceEnvironment e) =>
        new(e.Id, e.Name, e.Server, e.Provider, e.DatabaseName, e.SchemaVersion, e.Status, e.LastError, e.CreatedAt, e.UpdatedAt, e.IsProduction);

    [System.Text.RegularExpressions.GeneratedRegex("^[a-z0-9][a-z0-9-]{0,62}\\z")]
    private static partial System.Text.RegularExpressions.Regex EnvironmentName();
}
