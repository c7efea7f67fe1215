using Microsoft.Net.Http.Headers;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Strong ETags from PostgreSQL's row version (xmin). A write carrying If-Match with another version answers 412,
/// so two people editing one draft never silently overwrite each other.
/// </summary>
public static class ETags
{
    public static string From(uint version) => $"\"{version}\"";

    /// <summary>True when the request has no If-Match, has *, or names this version.</summary>
    public static bool IfMatchAllows(HttpRequest request, uint version)
    {
        var ifMatch = request.GetTypedHeaders().IfMatch;
        if (ifMatch.Count == 0) return true;
        var current = From(version);
        return ifMatch.Any(tag => tag.Equals(EntityTagHeaderValue.Any) || (!tag.IsWeak && tag.Tag.ToString() == current));
    }

    public static ProblemHttpResult PreconditionFailed(string what) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status412PreconditionFailed,
            title: "The resource was changed by someone else.",
            detail: $"The {what} changed since you read it (If-Match does not match its current ETag). Read it again and reapply your change.");
}
