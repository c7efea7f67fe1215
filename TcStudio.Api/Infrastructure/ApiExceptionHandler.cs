using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Turns exceptions into RFC 9457 problem details with the right status: malformed requests → 4xx, database rule
/// violations by SQLSTATE (unique/foreign key → 409, check/too long/bad text → 400), a database that cannot be reached
/// → 503 with Retry-After. Waits that ran out are 503 with Retry-After too, each said for what it is: a lock that did
/// not come free within Database:LockTimeout (55P03), a statement stopped by Database:RequestStatementTimeout
/// (57014), a connection pool exhausted by waiting requests. Anything else is a 500 with a trace id and no internals
/// (never a stack trace).
/// </summary>
public sealed partial class ApiExceptionHandler(IProblemDetailsService problems, ILogger<ApiExceptionHandler> logger,
    RequestTransactionSettings limits, IServiceProvider services) : IExceptionHandler
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

    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is OperationCanceledException && context.RequestAborted.IsCancellationRequested)
        {
            // The caller went away; there is nobody to answer.
            context.Response.StatusCode = 499;
            return true;
        }

        var retryAfter = RetryAfterSeconds;
        var wait = DescribeWait(exception, ref retryAfter);
        var (status, title, detail, errors, extensions) = wait ?? Describe(exception);
        if (wait is not null)
        {
            // Expected under contention, and said to the caller: one line, no stack trace.
            logger.LogWarning("Request {Method} {Path} answered 503: {Reason}", context.Request.Method, context.Request.Path, detail);
        }
        else if (status >= 500)
        {
            logger.LogError(exception, "Request {Method} {Path} failed", context.Request.Method, context.Request.Path);
        }
        if (status == StatusCodes.Status503ServiceUnavailable)
        {
            context.Response.Headers.RetryAfter = retryAfter.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        context.Response.StatusCode = status;
        var problem = errors is null
            ? new Microsoft.AspNetCore.Mvc.ProblemDetails()
            : new Microsoft.AspNetCore.Http.HttpValidationProblemDetails(errors);
        problem.Status = status;
        problem.Title = title;
        problem.Detail = detail;
        if (extensions is not null)
        {
            foreach (var (key, value) in extensions) problem.Extensions[key] = value;
        }
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = problem,
            Exception = exception,
        });
    }

    /// <summary>A wait that ran out (lock, statement, pool): 503, said for what it was, with a short Retry-After.</summary>
    private (int Status, string Title, string? Detail, IDictionary<string, string[]>? Errors, Dictionary<string, object?>? Extensions)?
        DescribeWait(Exception exception, ref int retryAfter)
    {
        var postgres = Find<PostgresException>(exception);
        if (postgres?.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            retryAfter = BusyRetryAfterSeconds;
            return (503, "The data is busy.",
                $"A lock held by another operation did not come free within {Seconds(limits.LockTimeout)} (Database:LockTimeout). "
                + "Nothing was changed; try again shortly.", null, new() { ["reason"] = "lock_timeout" });
        }
        if (postgres?.SqlState == PostgresErrorCodes.QueryCanceled || exception is OperationCanceledException)
        {
            // A statement cancelled by the server's statement_timeout, or by a deadline of ours (the caller is still there).
            return (503, "The database took too long.",
                $"A statement ran longer than {Seconds(limits.StatementTimeout)} (Database:RequestStatementTimeout) and was stopped. "
                + "Nothing was changed; try again shortly.", null, new() { ["reason"] = "statement_timeout" });
        }
        if (postgres is null && Find<NpgsqlException>(exception) is { InnerException: TimeoutException }
            && services.GetService<TcStudio.Data.Telemetry.NpgsqlPoolMetrics>()?.FindExhaustion(SystemDatabaseConnection.ConnectionName) is { } exhausted)
        {
            retryAfter = BusyRetryAfterSeconds;
            return (503, "The service is busy.", $"No database connection came free in time: {exhausted}. Nothing was changed; try again shortly.",
                null, new() { ["reason"] = "pool_exhausted" });
        }
        return null;
    }

    private static string Seconds(TimeSpan value) => $"{value.TotalSeconds:0.###} s";

    private static (int Status, string Title, string? Detail, IDictionary<string, string[]>? Errors, Dictionary<string, object?>? Extensions)
        Describe(Exception exception)
    {
        switch (exception)
        {
            case BadHttpRequestException { InnerException: JsonException json }:
                return JsonProblem(json);
            case BadHttpRequestException badRequest when BindFailure().Match(badRequest.Message) is { Success: true } bind:
                var parameter = bind.Groups["name"].Value;
                parameter = char.ToLowerInvariant(parameter[0]) + parameter[1..];
                return (400, "The request is not valid.", "See errors for the parameters at fault.",
                    new Dictionary<string, string[]> { [parameter] = [$"'{parameter}' has the wrong type or format."] }, null);
            case BadHttpRequestException badRequest:
                return (badRequest.StatusCode, ReasonFor(badRequest.StatusCode), badRequest.Message, null, null);
            case JsonException json:
                return JsonProblem(json);
            case DbUpdateConcurrencyException:
                return (412, "The resource was changed by someone else.",
                    "It changed while your request was being processed. Read it again and reapply your change.", null,
                    new() { [ErrorCodes.Extension] = ErrorCodes.ResourceChangedConcurrently });
        }

        var postgres = Find<PostgresException>(exception);
        if (postgres is not null) return DescribePostgres(postgres);

        if (Find<System.Text.EncoderFallbackException>(exception) is not null || Find<System.Text.DecoderFallbackException>(exception) is not null)
        {
            return (400, "The request is not valid.", "A value is not valid Unicode text.", null, null);
        }

        if (IsUnavailable(exception))
        {
            return (503, "The database is unavailable.", "The service cannot reach its database right now. Try again shortly.", null, null);
        }

        return (500, "An unexpected error occurred.", "The error was logged; quote the traceId when reporting it.", null, null);
    }

    private static (int, string, string?, IDictionary<string, string[]>?, Dictionary<string, object?>?) DescribePostgres(PostgresException e)
    {
        if (e is { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "pk_idempotency_keys" })
        {
            return (409, "A request with this Idempotency-Key completed meanwhile.",
                "Another request with the same key finished first. Send this one again to get that request's response.", null,
                new Dictionary<string, object?> { ["field"] = IdempotentRequests.HeaderName });
        }
        var field = e.ConstraintName is { } name && FieldByConstraint.TryGetValue(name, out var f) ? f : e.ColumnName;
        var extensions = field is null ? null : new Dictionary<string, object?> { ["field"] = field };
        return e.SqlState switch
        {
            PostgresErrorCodes.UniqueViolation =>
                (409, "Conflict.", field is null ? "A unique value is already taken." : $"The {field} is already taken.", null, extensions),
            PostgresErrorCodes.ForeignKeyViolation =>
                (409, "Conflict.", "The change would break a reference between records (something still refers to it, or it refers to something missing).", null, extensions),
            PostgresErrorCodes.CheckViolation or PostgresErrorCodes.NotNullViolation =>
                (400, "The request is not valid.", $"A value breaks a rule of the data ({e.ConstraintName ?? e.ColumnName}).", null, extensions),
            PostgresErrorCodes.StringDataRightTruncation =>
                (400, "The request is not valid.", "A value is longer than its field allows.", null, extensions),
            PostgresErrorCodes.InvalidTextRepresentation or PostgresErrorCodes.CharacterNotInRepertoire
                or PostgresErrorCodes.UntranslatableCharacter or PostgresErrorCodes.InvalidDatetimeFormat
                or PostgresErrorCodes.DatetimeFieldOverflow or PostgresErrorCodes.NumericValueOutOfRange =>
                (400, "The request is not valid.", "A value is not in a form the database accepts.", null, extensions),
            PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
                (409, "Conflict.", "The change collided with another one. Try again.", null, null),
            _ when e.IsTransient || e.SqlState.StartsWith("08", StringComparison.Ordinal)
                || e.SqlState is PostgresErrorCodes.TooManyConnections or PostgresErrorCodes.AdminShutdown
                    or PostgresErrorCodes.CannotConnectNow =>
                (503, "The database is unavailable.", "The service cannot reach its database right now. Try again shortly.", null, null),
            _ => (500, "An unexpected error occurred.", "The error was logged; quote the traceId when reporting it.", null, null),
        };
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

    private static (int, string, string?, IDictionary<string, string[]>?, Dictionary<string, object?>?) JsonProblem(JsonException json)
    {
        var path = json.Path is null or "$" ? "$" : json.Path.TrimStart('$', '.');
        var message = json.Message;
        string text;
        if (message.Contains("could not be mapped to any .NET member", StringComparison.Ordinal))
        {
            text = "Unknown field.";
        }
        else if (message.Contains("missing required properties", StringComparison.Ordinal))
        {
            var missing = message[(message.IndexOf("including:", StringComparison.Ordinal) + 10)..].Split(". Path")[0].Trim().TrimEnd('.');
            (path, text) = ("$", $"Missing required field(s): {missing}.");
        }
        else if (message.Contains("doesn't allow null values", StringComparison.Ordinal)
                 || message.Contains("does not allow null values", StringComparison.Ordinal))
        {
            text = "Must not be null.";
        }
        else if (message.Contains("could not be converted to", StringComparison.Ordinal))
        {
            text = "The value has the wrong type.";
        }
        else
        {
            text = "Malformed JSON.";
        }
        return (400, "The request body is not valid JSON for this endpoint.", "See errors for the fields at fault.",
            new Dictionary<string, string[]> { [path] = [text] }, null);
    }

    /// <summary>Minimal APIs' message for a route or query value that does not convert: Failed to bind parameter "int? Page" from "abc".</summary>
    [System.Text.RegularExpressions.GeneratedRegex("^Failed to bind parameter \"[^\"]*?(?<name>[A-Za-z_][A-Za-z0-9_]*)\" from")]
    private static partial System.Text.RegularExpressions.Regex BindFailure();

    private static string ReasonFor(int status) => status switch
    {
        413 => "The request body is too large.",
        415 => "The request body must be JSON (Content-Type: application/json).",
        _ => "The request is not valid.",
    };
}
