using System.Globalization;
using System.Net.Sockets;
using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Api.Infrastructure;

/// <summary>What the caller is told about an exception: an RFC 9457 problem, with Retry-After when waiting helps.</summary>
public sealed record ApiProblem(int Status, string Title, string? Detail, string? Code = null, IDictionary<string, string[]>? Errors = null,
    Dictionary<string, object?>? Extensions = null, int? RetryAfterSeconds = null)
{
    /// <summary>A wait that ran out (lock, statement, pool): expected under contention, logged as one line.</summary>
    public bool IsWait { get; init; }
}

/// <summary>
/// The one place that turns exceptions into RFC 9457 problem details, by exception type and SQLSTATE (never by
/// message text):
/// <list type="bullet">
/// <item>malformed requests → 4xx naming the field (System.Text.Json's <see cref="JsonException.Path"/>; for a route
/// or query value that does not convert, the endpoint's own parameter that does not parse);</item>
/// <item>system-database rule violations by SQLSTATE (unique/foreign key → 409, check/too long/bad text → 400), a
/// database that cannot be reached → 503 with Retry-After; waits that ran out → 503 with a short Retry-After, each
/// said for what it is: a lock that did not come free within Database:LockTimeout (55P03), a statement stopped by
/// Database:RequestStatementTimeout (57014), a connection pool exhausted by waiting requests;</item>
/// <item>workspace-database failures (<see cref="WorkspaceDatabaseException"/>) naming the environment: unreachable or
/// circuit open → 503 with Retry-After; refused statement → 422 with the server's number; a draft whose result may
/// not stand → 422 with its errors; timeout → 504; schema mismatch → 409; bad target → 409; a database that is not the
/// environment's → 409 naming both sides; admin-only → 403; a parameter value that does not fit → 400 naming it.</item>
/// </list>
/// Anything else is a 500 with a trace id and no internals (never a stack trace). As middleware
/// (<see cref="IExceptionHandler"/>) it answers whatever escapes an endpoint; as an endpoint filter
/// (<see cref="ApiExceptionHandlerExtensions.AnswersWorkspaceDatabaseFailures"/>) it answers workspace-database
/// failures inside the request's unit of work, so such a problem rolls the request's transaction back like any other.
/// </summary>
public sealed class ApiExceptionHandler(IProblemDetailsService problems, ILogger<ApiExceptionHandler> logger,
    RequestTransactionSettings limits, IServiceProvider services) : IExceptionHandler, IEndpointFilter
{
    /// <summary>Unique and foreign-key constraints named after the field a caller can fix.</summary>
    private static readonly Dictionary<string, string> FieldByConstraint = new(StringComparer.Ordinal)
    {
        ["ux_users_username"] = "username",
        ["ux_users_email"] = "email",
        ["ux_workspaces_slug"] = "slug",
        ["ux_roles_name"] = "name",
        ["ux_stored_procedures_workspace_id_name"] = "name",
        ["ux_workspace_environments_workspace_id_name"] = "name",
        ["pk_workspace_members"] = "username",
        ["fk_users_roles"] = "role",
    };

    /// <summary>Retry-After of a wait that ran out: short, the thing waited for is usually gone within seconds.</summary>
    public const int BusyRetryAfterSeconds = 1;

    public const int RetryAfterSeconds = 5;

    private const string InvalidTitle = "The request is not valid.";

    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is OperationCanceledException && context.RequestAborted.IsCancellationRequested)
        {
            // The caller went away; there is nobody to answer.
            context.Response.StatusCode = 499;
            return true;
        }

        var problem = Describe(exception, context);
        if (problem.IsWait)
        {
            // Expected under contention, and said to the caller: one line, no stack trace.
            logger.LogWarning("Request {Method} {Path} answered 503: {Reason}", context.Request.Method, context.Request.Path, problem.Detail);
        }
        else if (problem.Status >= 500 && exception is not WorkspaceDatabaseException)
        {
            logger.LogError(exception, "Request {Method} {Path} failed", context.Request.Method, context.Request.Path);
        }
        SetRetryAfter(context, problem);

        context.Response.StatusCode = problem.Status;
        var details = problem.Errors is null
            ? new Microsoft.AspNetCore.Mvc.ProblemDetails()
            : new HttpValidationProblemDetails(problem.Errors);
        details.Status = problem.Status;
        details.Title = problem.Title;
        details.Detail = problem.Detail;
        foreach (var (key, value) in ExtensionsOf(problem)) details.Extensions[key] = value;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = details,
            Exception = exception,
        });
    }

    /// <summary>Endpoint filter: a workspace-database failure becomes the endpoint's problem result.</summary>
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (WorkspaceDatabaseException e)
        {
            return ToResult(DescribeWorkspace(e), context.HttpContext);
        }
    }

    /// <summary>The status a caller would be answered for <paramref name="exception"/> (e.g. the failed side of a publish).</summary>
    public static int StatusOf(Exception exception) => DescribeStatic(exception, limits: null, context: null).Status;

    /// <summary>A problem as an endpoint's result (headers set on the response).</summary>
    public static IResult ToResult(ApiProblem problem, HttpContext http)
    {
        SetRetryAfter(http, problem);
        var extensions = ExtensionsOf(problem);
        return problem.Errors is null
            ? TypedResults.Problem(statusCode: problem.Status, title: problem.Title, detail: problem.Detail, extensions: extensions)
            : TypedResults.ValidationProblem(problem.Errors, detail: problem.Detail, title: problem.Title, extensions: extensions);
    }

    private static Dictionary<string, object?> ExtensionsOf(ApiProblem problem)
    {
        var extensions = new Dictionary<string, object?>(problem.Extensions ?? []);
        if (problem.Code is not null) extensions[ErrorCodes.Extension] = problem.Code;
        return extensions;
    }

    private static void SetRetryAfter(HttpContext http, ApiProblem problem)
    {
        if (problem.RetryAfterSeconds is { } seconds)
        {
            http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        }
    }

    private ApiProblem Describe(Exception exception, HttpContext context)
    {
        // First: a workspace failure carries the driver's exception inside, which must not read as the system database's.
        if (exception is WorkspaceDatabaseException workspace) return DescribeWorkspace(workspace);
        if (Find<PostgresException>(exception) is null && Find<NpgsqlException>(exception) is { InnerException: TimeoutException }
            && services.GetService<TcStudio.DatabaseTelemetry.NpgsqlPoolMetrics>()
                ?.FindExhaustion(SystemDatabaseConnection.ConnectionName) is { } exhausted)
        {
            return new ApiProblem(503, "The service is busy.",
                $"No database connection came free in time: {exhausted}. Nothing was changed; try again shortly.", ErrorCodes.DatabaseBusy,
                Extensions: new() { ["reason"] = "pool_exhausted" }, RetryAfterSeconds: BusyRetryAfterSeconds) { IsWait = true };
        }
        return DescribeStatic(exception, limits, context);
    }

    private static ApiProblem DescribeStatic(Exception exception, RequestTransactionSettings? limits, HttpContext? context)
    {
        if (exception is WorkspaceDatabaseException workspace) return DescribeWorkspace(workspace);
        if (DescribeWait(exception, limits) is { } wait) return wait;
        switch (exception)
        {
            case BadHttpRequestException { InnerException: JsonException json }:
                return JsonProblem(json);
            case BadHttpRequestException { StatusCode: StatusCodes.Status400BadRequest } when context is not null
                && UnparsableParameter(context) is { } parameter:
                return new ApiProblem(400, InvalidTitle, "See errors for the parameters at fault.", ErrorCodes.RequestInvalid,
                    new Dictionary<string, string[]> { [parameter] = [$"'{parameter}' has the wrong type or format."] });
            case BadHttpRequestException badRequest:
                return new ApiProblem(badRequest.StatusCode, ReasonFor(badRequest.StatusCode), badRequest.Message);
            case JsonException json:
                return JsonProblem(json);
            case DbUpdateConcurrencyException:
                return new ApiProblem(412, "The resource was changed by someone else.",
                    "It changed while your request was being processed. Read it again and reapply your change.",
                        ErrorCodes.ResourceChangedConcurrently);
        }

        if (Find<PostgresException>(exception) is { } postgres) return DescribePostgres(postgres);

        if (Find<System.Text.EncoderFallbackException>(exception) is not null || Find<System.Text.DecoderFallbackException>(exception) is not null)
        {
            return new ApiProblem(400, InvalidTitle, "A value is not valid Unicode text.", ErrorCodes.RequestInvalid);
        }

        if (IsUnavailable(exception)) return Unavailable();

        return new ApiProblem(500, "An unexpected error occurred.", "The error was logged; quote the traceId when reporting it.",
            ErrorCodes.ServerError);
    }

    private static ApiProblem Unavailable() =>
        new(503, "The database is unavailable.", "The service cannot reach its database right now. Try again shortly.",
            ErrorCodes.DatabaseUnavailable,
            RetryAfterSeconds: RetryAfterSeconds);

    /// <summary>A wait that ran out (lock, statement): 503, said for what it was, with a short Retry-After.</summary>
    private static ApiProblem? DescribeWait(Exception exception, RequestTransactionSettings? limits)
    {
        var postgres = Find<PostgresException>(exception);
        if (postgres?.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            var within = limits is null ? "in time" : $"within {Seconds(limits.LockTimeout)}";
            return new ApiProblem(503, "The data is busy.",
                $"A lock held by another operation did not come free {within} (Database:LockTimeout). Nothing was changed; try again shortly.",
                ErrorCodes.DatabaseLockTimeout, Extensions: new() { ["reason"] = "lock_timeout" }, RetryAfterSeconds: BusyRetryAfterSeconds)
            { IsWait = true };
        }
        if (postgres?.SqlState == PostgresErrorCodes.QueryCanceled || exception is OperationCanceledException)
        {
            // A statement cancelled by the server's statement_timeout, or by a deadline of ours (the caller is still there).
            var longer = limits is null ? "too long" : $"longer than {Seconds(limits.StatementTimeout)}";
            return new ApiProblem(503, "The database took too long.",
                $"A statement ran {longer} (Database:RequestStatementTimeout) and was stopped. Nothing was changed; try again shortly.",
                ErrorCodes.DatabaseStatementTimeout, Extensions: new() { ["reason"] = "statement_timeout" }, RetryAfterSeconds: RetryAfterSeconds)
            { IsWait = true };
        }
        return null;
    }

    private static string Seconds(TimeSpan value) => $"{value.TotalSeconds:0.###} s";

    /// <summary>System-database errors by SQLSTATE (the only SQLSTATE → HTTP mapping of the API).</summary>
    private static ApiProblem DescribePostgres(PostgresException e)
    {
        if (e is { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "pk_idempotency_keys" })
        {
            return new ApiProblem(409, "A request with this Idempotency-Key completed meanwhile.",
                "Another request with the same key finished first. Send this one again to get that request's response.",
                ErrorCodes.IdempotencyInProgress, Extensions: new() { ["field"] = IdempotentRequests.HeaderName });
        }
        var field = e.ConstraintName is { } name && FieldByConstraint.TryGetValue(name, out var f) ? f : e.ColumnName;
        var extensions = field is null ? null : new Dictionary<string, object?> { ["field"] = field };
        return e.SqlState switch
        {
            // Codes of unique violations follow the field (and route): ErrorCodes infers them.
            PostgresErrorCodes.UniqueViolation =>
                new(409, "Conflict.", field is null ? "A unique value is already taken." : $"The {field} is already taken.", Extensions: extensions),
            PostgresErrorCodes.ForeignKeyViolation =>
                new(409, "Conflict.", "The change would break a reference between records (something still refers to it, or it "
                    + "refers to something missing).",
                    ErrorCodes.ResourceReferenced, Extensions: extensions),
            PostgresErrorCodes.CheckViolation or PostgresErrorCodes.NotNullViolation =>
                new(400, InvalidTitle, $"A value breaks a rule of the data ({e.ConstraintName ?? e.ColumnName}).", ErrorCodes.RequestInvalid,
                    Extensions: extensions),
            PostgresErrorCodes.StringDataRightTruncation =>
                new(400, InvalidTitle, "A value is longer than its field allows.", ErrorCodes.RequestInvalid, Extensions: extensions),
            PostgresErrorCodes.InvalidTextRepresentation or PostgresErrorCodes.CharacterNotInRepertoire
                or PostgresErrorCodes.UntranslatableCharacter or PostgresErrorCodes.InvalidDatetimeFormat
                or PostgresErrorCodes.DatetimeFieldOverflow or PostgresErrorCodes.NumericValueOutOfRange =>
                new(400, InvalidTitle, "A value is not in a form the database accepts.", ErrorCodes.RequestInvalid, Extensions: extensions),
            PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
                new(409, "Conflict.", "The change collided with another one. Try again.", ErrorCodes.ResourceChangedConcurrently),
            _ when e.IsTransient || e.SqlState.StartsWith("08", StringComparison.Ordinal)
                || e.SqlState is PostgresErrorCodes.TooManyConnections or PostgresErrorCodes.AdminShutdown
                    or PostgresErrorCodes.CannotConnectNow => Unavailable(),
            _ => new(500, "An unexpected error occurred.", "The error was logged; quote the traceId when reporting it.", ErrorCodes.ServerError),
        };
    }

    /// <summary>Workspace-database failures, naming the environment (and the field or parameter at fault).</summary>
    private static ApiProblem DescribeWorkspace(WorkspaceDatabaseException e)
    {
        if (e is WorkspaceParameterException parameter)
        {
            return new ApiProblem(400, InvalidTitle, null, ErrorCodes.ProcedureInvalidParameter,
                new Dictionary<string, string[]> { [$"parameters.{parameter.Parameter}"] = [parameter.Message] },
                new() { ["environment"] = e.Environment });
        }

        var extensions = new Dictionary<string, object?> { ["environment"] = e.Environment };
        if (e.Field is { } field) extensions["field"] = field;
        int? retryAfter = null;
        switch (e)
        {
            case WorkspaceDatabaseUnavailableException unavailable:
                retryAfter = Math.Max(1, (int)Math.Ceiling(unavailable.RetryAfter.TotalSeconds));
                extensions["circuit"] = unavailable.CircuitOpen ? "open" : "closed";
                break;
            case WorkspaceSqlException sql:
                extensions["number"] = sql.Number;
                if (sql.Line is { } line) extensions["line"] = line;
                break;
            case WorkspaceDraftRefusedException refused:
                extensions["errors"] = refused.Validation.Errors;
                break;
        }
        var (status, title, code) = e switch
        {
            WorkspaceDatabaseUnavailableException => (503, "The workspace database is unavailable.", ErrorCodes.EnvironmentUnreachable),
            WorkspaceServerNotReadyException => (503, "The workspace database cannot be used.", ErrorCodes.EnvironmentInvalidTarget),
            WorkspaceTimeoutException => (504, "The execution timed out.", ErrorCodes.EnvironmentTimeout),
            WorkspaceSchemaException => (409, "The workspace database's schema does not match.", ErrorCodes.EnvironmentSchemaMismatch),
            WorkspaceSqlException => (422, "The workspace database reported an error.", ErrorCodes.ProcedureSqlError),
            WorkspaceDraftRefusedException => (422, "The draft does not validate.", ErrorCodes.ProcedureInvalidSql),
            WorkspaceAdminOnlyException => (403, "Forbidden.", ErrorCodes.AuthForbidden),
            WorkspaceOwnershipException => (409, "The database does not belong to this environment.", ErrorCodes.EnvironmentOwnership),
            WorkspaceTargetException => (409, "The workspace database cannot be used.", ErrorCodes.EnvironmentInvalidTarget),
            _ => (500, "An unexpected error occurred.", ErrorCodes.ServerError),
        };
        return new ApiProblem(status, title, e.Message, code, Extensions: extensions, RetryAfterSeconds: retryAfter);
    }

    private static bool IsUnavailable(Exception exception) =>
        Find<NpgsqlException>(exception) is not null
        || Find<SocketException>(exception) is not null
        || Find<TimeoutException>(exception) is not null
        || exception is RetryLimitExceededException;

    private static T? Find<T>(Exception? exception) where T : Exception
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is T match) return match;
        }
        return null;
    }

    /// <summary>
    /// A body System.Text.Json refused, at the path it gives (<see cref="JsonException.Path"/>): text that is not JSON
    /// (the reader's own exception inside), a value of the wrong type (a conversion's exception inside), or a
    /// well-formed value the endpoint's contract refuses (an unknown field, a missing required one, a null).
    /// </summary>
    private static ApiProblem JsonProblem(JsonException json)
    {
        var path = json.Path is null or "$" ? "$" : json.Path.TrimStart('$', '.');
        var text = json.InnerException switch
        {
            JsonException => "Malformed JSON.",
            InvalidOperationException or FormatException or OverflowException => "The value has the wrong type.",
            _ when path == "$" => "Missing required field(s), or a value that is not an object.",
            _ => "Not accepted here: an unknown field, a null where a value is required, or a value of the wrong type.",
        };
        return new ApiProblem(400, "The request body is not valid JSON for this endpoint.", "See errors for the fields at fault.",
            ErrorCodes.RequestMalformedJson, new Dictionary<string, string[]> { [path] = [text] });
    }

    /// <summary>
    /// The route or query value that does not convert to its parameter's type: found by parsing the request's values
    /// with the endpoint's own parameter types (the handler's signature, [AsParameters] records included).
    /// </summary>
    private static string? UnparsableParameter(HttpContext context)
    {
        // The exception handler middleware clears the endpoint and route values before it asks; its feature keeps them.
        var failed = context.Features.Get<IExceptionHandlerFeature>();
        var endpoint = failed?.Endpoint ?? context.GetEndpoint();
        var routeValues = failed?.RouteValues ?? context.Request.RouteValues;
        if (endpoint?.Metadata.GetMetadata<MethodInfo>() is not { } handler) return null;
        foreach (var (name, type) in handler.GetParameters().SelectMany(BoundValues))
        {
            var value = routeValues.TryGetValue(name, out var routeValue) ? routeValue?.ToString()
                : context.Request.Query.TryGetValue(name, out var query) ? query.ToString() : null;
            if (value is null || Parses(type, value)) continue;
            return char.ToLowerInvariant(name[0]) + name[1..];
        }
        return null;
    }

    private static IEnumerable<(string Name, Type Type)> BoundValues(ParameterInfo parameter)
    {
        if (parameter.GetCustomAttribute<AsParametersAttribute>() is null) return [(parameter.Name!, parameter.ParameterType)];
        return parameter.ParameterType.GetProperties(BindingFlags.Public | BindingFlags.Instance).Select(p => (p.Name, p.PropertyType));
    }

    private static bool Parses(Type type, string value)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (underlying == typeof(string)) return true;
        if (Nullable.GetUnderlyingType(type) is not null && value.Length == 0) return true;
        if (underlying.IsEnum) return Enum.TryParse(underlying, value, ignoreCase: true, out _);
        var tryParse = underlying.GetMethod("TryParse", BindingFlags.Public | BindingFlags.Static,
            [typeof(string), typeof(IFormatProvider), underlying.MakeByRefType()]);
        if (tryParse is null) return true; // not a simple value: bound some other way
        var arguments = new object?[] { value, CultureInfo.InvariantCulture, null };
        return (bool)tryParse.Invoke(null, arguments)!;
    }

    private static string ReasonFor(int status) => status switch
    {
        413 => "The request body is too large.",
        415 => "The request body must be JSON (Content-Type: application/json).",
        _ => InvalidTitle,
    };
}

public static class ApiExceptionHandlerExtensions
{
    /// <summary>Workspace-database failures answered inside the endpoint (see <see cref="ApiExceptionHandler"/>).</summary>
    public static TBuilder AnswersWorkspaceDatabaseFailures<TBuilder>(this TBuilder endpoint) where TBuilder : IEndpointConventionBuilder =>
        endpoint.AddEndpointFilter<TBuilder, ApiExceptionHandler>();
}
