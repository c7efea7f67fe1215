namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Problem results used across features, so the same situation reads the same everywhere (with its code, see
/// <see cref="ErrorCodes"/>).
/// </summary>
public static class Problems
{
    public static ProblemHttpResult NotFound(string what) =>
        ErrorCodes.Problem(ErrorCodes.ResourceNotFound, StatusCodes.Status404NotFound, "Not found.", $"{what} was not found.");

    public static ProblemHttpResult Forbidden(string detail) =>
        ErrorCodes.Problem(ErrorCodes.AuthForbidden, StatusCodes.Status403Forbidden, "Forbidden.", detail);

    public static ProblemHttpResult Conflict(string detail, string? field = null, string code = ErrorCodes.ResourceConflict)
    {
        var extensions = field is null ? null : new Dictionary<string, object?> { ["field"] = field };
        return ErrorCodes.Problem(code, StatusCodes.Status409Conflict, "Conflict.", detail, extensions);
    }
}
