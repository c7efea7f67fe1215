using Microsoft.AspNetCore.Mvc;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The stable, machine-readable <c>code</c> every problem carries (docs/api.md, "Error codes", lists them all; a
/// test checks that every code a test sees is listed there). A problem created with a code keeps it; any other gets
/// one here, from what it says (its status, the field or reason it names, the route), so no problem goes out without
/// one. Codes never change meaning; new situations get new codes.
/// </summary>
public static class ErrorCodes
{
    public const string Extension = "code";

    public const string RequestInvalid = "request.invalid";
    public const string RequestMalformedJson = "request.malformed_json";
    public const string RequestTooLarge = "request.too_large";
    public const string RequestUnsupportedMediaType = "request.unsupported_media_type";
    public const string RequestMethodNotAllowed = "request.method_not_allowed";
    public const string RequestRateLimited = "request.rate_limited";
    public const string IdempotencyKeyInvalid = "idempotency.key_invalid";
    public const string IdempotencyKeyReused = "idempotency.key_reused";
    public const string IdempotencyInProgress = "idempotency.in_progress";
    public const string AuthUnauthenticated = "auth.unauthenticated";
    public const string AuthInvalidCredentials = "auth.invalid_credentials";
    public const string AuthRateLimited = "auth.rate_limited";
    public const string AuthForbidden = "auth.forbidden";
    public const string ResourceNotFound = "resource.not_found";
    public const string ResourceConflict = "resource.conflict";
    public const string ResourceReferenced = "resource.referenced";
    public const string ResourcePreconditionFailed = "resource.precondition_failed";
    public const string ResourceChangedConcurrently = "resource.changed_concurrently";
    public const string UserUsernameTaken = "user.username_taken";
    public const string UserEmailTaken = "user.email_taken";
    public const string UserLastAdmin = "user.last_admin";
    public const string MemberLastOwner = "member.last_owner";
    public const string ProcedureNotPublished = "procedure.not_published";
    public const string WorkspaceSlugTaken = "workspace.slug_taken";
    public const string WorkspaceQuotaReached = "workspace.quota_reached";
    public const string MemberAlreadyExists = "member.already_exists";
    public const string RoleNameTaken = "role.name_taken";
    public const string EnvironmentNameTaken = "environment.name_taken";
    public const string EnvironmentQuotaReached = "environment.quota_reached";
    public const string EnvironmentUnreachable = "environment.unreachable";
    public const string EnvironmentTimeout = "environment.timeout";
    public const string EnvironmentSchemaMismatch = "environment.schema_mismatch";
    public const string EnvironmentInvalidTarget = "environment.invalid_target";
    public const string EnvironmentOwnership = "environment.database_not_owned";
    public const string ProcedureNameTaken = "procedure.name_taken";
    public const string ProcedureInvalidSql = "procedure.invalid_sql";
    public const string ProcedureSqlError = "procedure.sql_error";
    public const string ProcedureInvalidParameter = "procedure.invalid_parameter";
    public const string ProcedureBusy = "procedure.busy";
    public const string DatabaseLockTimeout = "database.lock_timeout";
    public const string DatabaseStatementTimeout = "database.statement_timeout";
    public const string DatabaseBusy = "database.busy";
    public const string DatabaseUnavailable = "database.unavailable";
    public const string ServiceNotReady = "service.not_ready";
    public const string ServerError = "server.error";

    /// <summary>Every code, for the documentation test.</summary>
    public static IReadOnlyList<string> All { get; } = typeof(ErrorCodes).GetFields()
        .Where(f => f.IsLiteral && f.Name != nameof(Extension)).Select(f => (string)f.GetRawConstantValue()!).ToList();

    /// <summary>A problem result with its code.</summary>
    public static ProblemHttpResult Problem(string code, int statusCode, string title, string? detail = null,
        IDictionary<string, object?>? extensions = null)
    {
        var all = new Dictionary<string, object?>(extensions ?? new Dictionary<string, object?>()) { [Extension] = code };
        return TypedResults.Problem(statusCode: statusCode, title: title, detail: detail, extensions: all);
    }

    /// <summary>Run for every problem the API writes (ProblemDetailsOptions.CustomizeProblemDetails).</summary>
    public static void Assign(ProblemDetails problem, HttpContext http)
    {
        if (problem.Extensions.TryGetValue(Extension, out var existing) && existing is string { Length: > 0 }) return;
        problem.Extensions[Extension] = Infer(problem, http);
    }

    private static string Infer(ProblemDetails problem, HttpContext http)
    {
        var path = http.Request.Path.Value ?? "";
        var field = problem.Extensions.TryGetValue("field", out var f) ? f as string : null;
        var reason = problem.Extensions.TryGetValue("reason", out var r) ? r as string : null;
        var inWorkspaceDatabase = problem.Extensions.ContainsKey("environment");
        return (problem.Status ?? http.Response.StatusCode) switch
        {
            400 when problem.Title?.Contains("JSON", StringComparison.Ordinal) == true => RequestMalformedJson,
            400 when field == IdempotentRequests.HeaderName => IdempotencyKeyInvalid,
            400 => RequestInvalid,
            401 when path.StartsWith("/api/auth/token", StringComparison.OrdinalIgnoreCase) => AuthInvalidCredentials,
            401 => AuthUnauthenticated,
            403 => AuthForbidden,
            404 => ResourceNotFound,
            405 => RequestMethodNotAllowed,
            409 when field == IdempotentRequests.HeaderName => IdempotencyInProgress,
            409 when field == "slug" => WorkspaceSlugTaken,
            409 when field == "username" && path.Contains("/members", StringComparison.OrdinalIgnoreCase) => MemberAlreadyExists,
            409 when field == "username" => UserUsernameTaken,
            409 when field == "email" => UserEmailTaken,
            409 when field == "role" => ResourceReferenced,
            409 when field == "name" && path.Contains("/procedures", StringComparison.OrdinalIgnoreCase) => ProcedureNameTaken,
            409 when field == "name" && path.Contains("/environments", StringComparison.OrdinalIgnoreCase) => EnvironmentNameTaken,
            409 when field == "name" => RoleNameTaken,
            409 => ResourceConflict,
            412 => ResourcePreconditionFailed,
            413 => RequestTooLarge,
            415 => RequestUnsupportedMediaType,
            422 when problem.Extensions.ContainsKey("number") => ProcedureSqlError,
            422 when inWorkspaceDatabase => ProcedureInvalidSql,
            422 => IdempotencyKeyReused,
            429 when path.StartsWith("/api/auth/token", StringComparison.OrdinalIgnoreCase) => AuthRateLimited,
            429 when inWorkspaceDatabase || path.EndsWith("/execute", StringComparison.OrdinalIgnoreCase) => ProcedureBusy,
            429 => RequestRateLimited,
            503 when inWorkspaceDatabase => EnvironmentUnreachable,
            503 when reason == "lock_timeout" => DatabaseLockTimeout,
            503 when reason == "statement_timeout" => DatabaseStatementTimeout,
            503 when reason == "pool_exhausted" => DatabaseBusy,
            503 when problem.Title?.Contains("not ready", StringComparison.Ordinal) == true => ServiceNotReady,
            503 => DatabaseUnavailable,
            504 => EnvironmentTimeout,
            _ => ServerError,
        };
    }
}
