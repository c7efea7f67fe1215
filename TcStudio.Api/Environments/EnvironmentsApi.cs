using TcStudio.Api.Activities;
using TcStudio.Api.WorkspaceDatabases;
using TcStudio.Api.Workspaces;
using TcStudio.Data.WorkspaceDatabases;

namespace TcStudio.Api.Environments;

public sealed record WorkspaceServerSummary(string Name, string Provider);

public sealed record EnvironmentDetails(Guid Id, string Name, string Server, string Provider, string DatabaseName, int SchemaVersion,
    string Status, string? LastError, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

/// <param name="Create">True: create the database (it must not exist); false: attach an existing one.</param>
public sealed record CreateEnvironmentRequest(string Name, string Server, string DatabaseName, bool Create = false);

public sealed record AppliedMigrationSummary(int Version, string Name, double DurationMs);

public sealed record MigrateEnvironmentResponse(string Environment, IReadOnlyList<AppliedMigrationSummary> Applied, int SchemaVersion, string Status);

/// <param name="Circuit">closed, open or half-open (closed when nothing is cached for it).</param>
public sealed record EnvironmentStatusResponse(string Environment, string Server, string Provider, string DatabaseName, bool Reachable,
    int? SchemaVersion, int ExpectedSchemaVersion, string? SchemaState, IReadOnlyList<string> PendingMigrations, string Circuit,
    string Status, string? LastError);

/// <summary>
/// Registered servers and a workspace's environments. Users pick a registered server by name and a database name;
/// hosts and credentials stay in configuration. A workspace's environments share one provider (its SQL dialect):
/// the first sets it. Creating an environment (optionally its database), migrating it and dropping its database
/// wait on the workspace server, so these endpoints hold no system-database transaction while they do.
/// </summary>
public static partial class EnvironmentsApi
{
    public static RouteGroupBuilder MapEnvironmentsApi(this RouteGroupBuilder api)
    {
        api.MapGet("/workspace-servers", ListServers).WithTags("Environments")
            .WithSummary("The registered workspace database servers: names and providers (never connection strings).");

        var environments = api.MapWorkspaceScope().MapGroup("/environments").WithTags("Environments")
            .AddEndpointFilter<WorkspaceDatabaseProblems>();
        environments.MapGet("/", ListEnvironments).RequireWorkspacePermission(WorkspacePermission.Read);
        environments.MapPost("/", CreateEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments).WaitsOnWorkspaceDatabase()
            .WithSummary("Create an environment on a registered server: optionally create its database; the base schema is applied.");
        environments.MapGet("/{env}", GetEnvironment).RequireWorkspacePermission(WorkspacePermission.Read);
        environments.MapDelete("/{env}", DeleteEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments).WaitsOnWorkspaceDatabase()
            .WithSummary("Delete the environment; its database is kept unless ?dropDatabase=true.");
        environments.MapPost("/{env}/migrate", MigrateEnvironment).RequireWorkspacePermission(WorkspacePermission.ManageEnvironments).WaitsOnWorkspaceDatabase()
            .WithSummary("Apply pending base-schema migrations (and repair the database's roles and grants).");
        environments.MapGet("/{env}/status", GetStatus).RequireWorkspacePermission(WorkspacePermission.Read).WaitsOnWorkspaceDatabase()
            .WithSummary("Reachability, schema version, pending migrations, circuit state and last error.");
        return api;
    }

    public static Ok<IReadOnlyList<WorkspaceServerSummary>> ListServers(WorkspaceServerRegistry servers) =>
        TypedResults.Ok<IReadOnlyList<WorkspaceServerSummary>>(servers.Servers.Select(s => new WorkspaceServerSummary(s.Name, s.Provider)).ToList());

    public static async Task<Ok<IReadOnlyList<EnvironmentDetails>>> ListEnvironments(CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db) =>
        TypedResults.Ok<IReadOnlyList<EnvironmentDetails>>(await db.WorkspaceEnvironments.AsNoTracking()
            .Where(e => e.WorkspaceId == workspace.Id).OrderBy(e => e.Name).Select(e => ToDetails(e)).ToListAsync(http.RequestAborted));

    public static async Task<Results<Ok<EnvironmentDetails>, ProblemHttpResult>> GetEnvironment(string env, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db) =>
        await FindAsync(db, workspace.Id, env, http.RequestAborted) is { } environment
            ? TypedResults.Ok(ToDetails(environment))
            : NotFound(env);

    public static async Task<Results<Created<EnvironmentDetails>, ValidationProblem, ProblemHttpResult>> CreateEnvironment(
        CreateEnvironmentRequest request, CurrentWorkspace workspace, HttpContext http, TcStudioDbContext db,
        WorkspaceServerRegistry servers, WorkspaceDatabaseService databases, ILoggerFactory loggers)
    {
        var errors = new FieldErrors()
            .Pattern("name", request.Name, EnvironmentName(), "1–63 lowercase letters, digits or hyphens, starting with a letter or digit")
            .Pattern("databaseName", request.DatabaseName, WorkspaceDatabaseNames.Pattern(), "letters, digits and '_', starting with a letter or '_'");
        var server = request.Server is null ? null : servers.Find(request.Server);
        if (request.Server is null) errors.Add("server", "'server' is required.");
        else if (server is null)
        {
            errors.Add("server", $"'{request.Server}' is not a registered server (GET /api/workspace-servers lists them).");
        }
        if (server is not null && !errors.Any
            && WorkspaceDatabaseNames.FindProblem(request.DatabaseName, server, databases.Cache.ProviderFor(server.Provider)) is { } problem)
        {
            errors.Add("databaseName", char.ToUpperInvariant(problem[0]) + problem[1..]);
        }
        if (errors.Any) return errors.ToProblem();

        var ct = http.RequestAborted;
        if (await db.WorkspaceEnvironments.AnyAsync(e => e.WorkspaceId == workspace.Id && e.Provider != server!.Provider, ct))
        {
            return ProviderConflict(server!);
        }
        if (await db.WorkspaceEnvironments.AnyAsync(e => e.Server == server!.Name && e.DatabaseName.ToLower() == request.DatabaseName.ToLower(), ct))
        {
            return Problems.Conflict($"Database '{request.DatabaseName}' on server '{server!.Name}' already belongs to an environment.", "databaseName");
        }

        var environment = new WorkspaceEnvironment
        {
            WorkspaceId = workspace.Id,
            Name = request.Name,
            Provider = server!.Provider,
            Server = server.Name,
            DatabaseName = request.DatabaseName,
        };
        db.WorkspaceEnvironments.Add(environment);
        await db.SaveChangesAsync(ct); // a taken name → 23505 → 409 naming "name"

        // The first environment sets the workspace's provider. Two creates racing with different providers both
        // see each other once inserted: the later one (ids are time-ordered) backs off.
        if (await db.WorkspaceEnvironments.AnyAsync(e => e.WorkspaceId == workspace.Id && e.Provider != environment.Provider
                && e.Id.CompareTo(environment.Id) < 0, ct))
        {
            await db.WorkspaceEnvironments.Where(e => e.Id == environment.Id).ExecuteDeleteAsync(CancellationToken.None);
            return ProviderConflict(server);
        }

        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        var created = false;
        IReadOnlyList<WorkspaceDatabaseService.MigrationStep> steps;
        try
        {
            created = await databases.ProvisionAsync(target, request.Create, ct);
            steps = await databases.MigrateAsync(target, progress: null, ct);
        }
        catch (Exception)
        {
            // Nothing half-made stays behind: the row goes, and so does a database created here.
            await db.WorkspaceEnvironments.Where(e => e.Id == environment.Id).ExecuteDeleteAsync(CancellationToken.None);
            if (created)
            {
                try
                {
                    await databases.DropDatabaseAsync(target, CancellationToken.None);
                }
                catch (WorkspaceDatabaseException dropFailure)
                {
                    loggers.CreateLogger(typeof(EnvironmentsApi)).LogWarning(dropFailure, "Could not drop database {Database} after a failed environment creation", target.Database);
                }
            }
            databases.Cache.Evict(workspace.Id, environment.Name);
            throw;
        }

        var version = steps.Count == 0 ? (await databases.GetSchemaStatusAsync(target, ct)).Version : steps[^1].Migration.Version;
        db.ChangeTracker.Clear();
        var saved = await db.WorkspaceEnvironments.SingleAsync(e => e.Id == environment.Id, CancellationToken.None);
        saved.SchemaVersion = version;
        saved.Status = EnvironmentStatus.Ready;
        saved.LastError = null;
        db.AddActivity(workspace.Id, workspace.UserId, "environment.created", EntityTypes.Environment, environment.Id,
            new { environment.Name, environment.Server, environment.DatabaseName, createdDatabase = created, schemaVersion = version });
        var location = $"/api/workspaces/{workspace.Slug}/environments/{environment.Name}";
        IdempotentRequests.RecordWithNextSave(http, () => TypedResults.Created(location, ToDetails(saved)));
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.Created(location, ToDetails(saved));
    }

    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteEnvironment(string env, bool? dropDatabase, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases)
    {
        var environment = await FindAsync(db, workspace.Id, env, http.RequestAborted, tracked: true);
        if (environment is null) return NotFound(env);

        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        if (dropDatabase == true) await databases.DropDatabaseAsync(target, http.RequestAborted);
        databases.Cache.Evict(workspace.Id, environment.Name, "environment deleted");

        db.WorkspaceEnvironments.Remove(environment);
        db.AddActivity(workspace.Id, workspace.UserId, "environment.deleted", EntityTypes.Environment, environment.Id,
            new { environment.Name, environment.Server, environment.DatabaseName, droppedDatabase = dropDatabase == true });
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.NoContent();
    }

    public static async Task<Results<Ok<MigrateEnvironmentResponse>, ProblemHttpResult>> MigrateEnvironment(string env, CurrentWorkspace workspace,
        HttpContext http, TcStudioDbContext db, WorkspaceDatabaseService databases, TimeProvider clock)
    {
        var environment = await FindAsync(db, workspace.Id, env, http.RequestAborted);
        if (environment is null) return NotFound(env);

        var target = WorkspaceDatabaseService.TargetOf(environment, workspace.Slug);
        IReadOnlyList<WorkspaceDatabaseService.MigrationStep> steps;
        try
        {
            steps = await databases.MigrateAsync(target, progress: null, http.RequestAborted);
        }
        catch (WorkspaceDatabaseException failure)
        {
            var (status, error) = WorkspaceEnvironmentState.From(failure);
            await WorkspaceEnvironmentState.RecordAsync(db, environment.Id, null, status, error, clock, CancellationToken.None);
            throw;
        }

        var version = (await databases.GetSchemaStatusAsync(target, http.RequestAborted)).Version;
        // The row's new state and its activity in one SaveChanges: one transaction.
        var row = await db.WorkspaceEnvironments.SingleAsync(e => e.Id == environment.Id, CancellationToken.None);
        row.SchemaVersion = version;
        row.Status = EnvironmentStatus.Ready;
        row.LastError = null;
        if (steps.Count > 0)
        {
            db.AddActivity(workspace.Id, workspace.UserId, "environment.migrated", EntityTypes.Environment, environment.Id,
                new { environment.Name, applied = steps.Select(s => s.Migration.Id).ToList(), schemaVersion = version });
        }
        var migrated = new MigrateEnvironmentResponse(environment.Name,
            steps.Select(s => new AppliedMigrationSummary(s.Migration.Version, s.Migration.Name, Math.Round(s.Duration.TotalMilliseconds, 1))).ToList(),
            version, EnvironmentStatus.Ready);
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
        var expected = databases.Cache.ProviderFor(environment.Provider).Migrations.Count;
        WorkspaceSchemaStatus? schema = null;
        string status;
        string? lastError;
        try
        {
            schema = await databases.GetSchemaStatusAsync(target, http.RequestAborted, refresh: true);
            (status, lastError) = WorkspaceEnvironmentState.From(schema);
        }
        catch (WorkspaceDatabaseException failure) when (failure is WorkspaceDatabaseUnavailableException or WorkspaceTargetException)
        {
            (status, lastError) = WorkspaceEnvironmentState.From(failure);
        }

        if (status != environment.Status || lastError != environment.LastError || (schema is not null && schema.Version != environment.SchemaVersion))
        {
            await WorkspaceEnvironmentState.RecordAsync(db, environment.Id, schema?.Version, status, lastError, clock, CancellationToken.None);
        }
        return TypedResults.Ok(new EnvironmentStatusResponse(environment.Name, environment.Server, environment.Provider, environment.DatabaseName,
            Reachable: schema is not null, schema?.Version, expected, schema?.StateName, schema?.Pending ?? [],
            databases.Cache.CircuitStateOf(workspace.Id, environment.Name) ?? "closed", status, lastError));
    }

    internal static Task<WorkspaceEnvironment?> FindAsync(TcStudioDbContext db, Guid workspaceId, string name, CancellationToken ct, bool tracked = false)
    {
        var query = db.WorkspaceEnvironments.Where(e => e.WorkspaceId == workspaceId && e.Name == name);
        return (tracked ? query : query.AsNoTracking()).SingleOrDefaultAsync(ct);
    }

    internal static ProblemHttpResult NotFound(string env) => Problems.NotFound($"Environment '{env}'");

    private static ProblemHttpResult ProviderConflict(WorkspaceServer server) =>
        Problems.Conflict($"This workspace's environments use another provider; server '{server.Name}' is {server.Provider}. "
            + "All environments of a workspace share one SQL dialect.", "server");

    private static EnvironmentDetails ToDetails(WorkspaceEnvironment e) =>
        new(e.Id, e.Name, e.Server, e.Provider, e.DatabaseName, e.SchemaVersion, e.Status, e.LastError, e.CreatedAt, e.UpdatedAt);

    [System.Text.RegularExpressions.GeneratedRegex("^[a-z0-9][a-z0-9-]{0,62}\\z")]
    private static partial System.Text.RegularExpressions.Regex EnvironmentName();
}
