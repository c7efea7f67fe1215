using System.Globalization;
using TcStudio.Data.WorkspaceDatabases;

namespace TcStudio.Api.WorkspaceDatabases;

/// <summary>
/// Answers workspace-database failures with problem details naming the environment: unreachable or circuit open →
/// 503 with Retry-After; refused statement → 422 with the server's number; a draft whose result may not stand → 422
/// with its errors; timeout → 504; schema mismatch → 409; bad target → 4xx; a database that is not the environment's
/// (claimed elsewhere, unmarked, marked for another) → 409 naming both sides; a parameter value that does not fit → 400
/// naming it. Runs inside
/// <see cref="Workspaces.WorkspaceScopeFilter"/>, so a problem rolls its transaction back like any other.
/// </summary>
public sealed class WorkspaceDatabaseProblems : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (WorkspaceDatabaseException e)
        {
            return ToProblem(e, context.HttpContext);
        }
    }

    public static IResult ToProblem(WorkspaceDatabaseException e, HttpContext http)
    {
        if (e is WorkspaceParameterException parameter)
        {
            return TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { [$"parameters.{parameter.Parameter}"] = [parameter.Message] },
                title: "The request is not valid.", extensions: new Dictionary<string, object?>
                {
                    ["environment"] = e.Environment, [ErrorCodes.Extension] = ErrorCodes.ProcedureInvalidParameter,
                });
        }

        var extensions = new Dictionary<string, object?> { ["environment"] = e.Environment, [ErrorCodes.Extension] = CodeOf(e) };
        if (e.Field is { } field) extensions["field"] = field;
        switch (e)
        {
            case WorkspaceDatabaseUnavailableException unavailable:
                var seconds = Math.Max(1, (int)Math.Ceiling(unavailable.RetryAfter.TotalSeconds));
                http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
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
        return TypedResults.Problem(statusCode: e.StatusCode, title: e.Title, detail: e.Message, extensions: extensions);
    }

    private static string CodeOf(WorkspaceDatabaseException e) => e switch
    {
        WorkspaceDatabaseUnavailableException => ErrorCodes.EnvironmentUnreachable,
        WorkspaceTimeoutException => ErrorCodes.EnvironmentTimeout,
        WorkspaceSchemaException => ErrorCodes.EnvironmentSchemaMismatch,
        WorkspaceSqlException => ErrorCodes.ProcedureSqlError,
        WorkspaceDraftRefusedException => ErrorCodes.ProcedureInvalidSql,
        WorkspaceOwnershipException { StatusCode: 403 } => ErrorCodes.AuthForbidden,
        WorkspaceOwnershipException => ErrorCodes.EnvironmentOwnership,
        WorkspaceTargetException { StatusCode: 404 } => ErrorCodes.ResourceNotFound,
        WorkspaceTargetException => ErrorCodes.EnvironmentInvalidTarget,
        _ => ErrorCodes.ServerError,
    };
}
