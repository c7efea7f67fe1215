namespace TcStudio.Api.Infrastructure;

/// <summary>Marks a write endpoint whose handler evaluates If-Match / If-None-Match (through <see cref="ETags.CheckPreconditions"/>).</summary>
public sealed record AcceptsPreconditions;

/// <summary>
/// Runs for every endpoint under /api, before the handler and any database work:
/// <list type="bullet">
/// <item>a malformed If-Match or If-None-Match is a 400 naming the header, on every route;</item>
/// <item>a write (POST, PUT, PATCH, DELETE) carrying either header on a route that does not evaluate them is a 400 too,
/// rather than a write whose guard was silently ignored;</item>
/// <item>a GET whose response carries an ETag honours them after the handler: If-None-Match matching (weakly) is a
/// 304, If-Match not matching (strongly) is a 412.</item>
/// </list>
/// </summary>
public sealed class ConditionalRequestFilter : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var headers = context.HttpContext.Request.Headers;
        if (!EntityTagHeader.TryParse(headers.IfMatch, out var ifMatch)) return ValueTask.FromResult<object?>(ETags.Malformed(ETags.IfMatch));
        if (!EntityTagHeader.TryParse(headers.IfNoneMatch, out var ifNoneMatch))
        {
            return ValueTask.FromResult<object?>(ETags.Malformed(ETags.IfNoneMatch));
        }
        // Most requests carry neither header: straight on, without an async frame of this filter's own.
        return ifMatch is null && ifNoneMatch is null ? next(context) : ConditionalAsync(context, next, ifMatch, ifNoneMatch);
    }

    private static async ValueTask<object?> ConditionalAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next,
        EntityTagCondition? ifMatch, EntityTagCondition? ifNoneMatch)
    {
        var http = context.HttpContext;

        var safe = HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method);
        if (!safe)
        {
            if (http.GetEndpoint()?.Metadata.GetMetadata<AcceptsPreconditions>() is not null) return await next(context);
            var header = ifMatch is not null ? ETags.IfMatch : ETags.IfNoneMatch;
            return TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "The request is not valid.",
                detail: $"This route does not support conditional requests: it has no ETag to compare {header} with. "
                    + $"Send the request without {header}. Nothing was changed.",
                extensions: new Dictionary<string, object?>
                {
                    ["errors"] = new Dictionary<string, string[]> { [header] = [$"'{header}' is not supported by this route."] },
                });
        }

        var result = await next(context);
        if (!IsSuccess(result) || http.Response.Headers.ETag is not { Count: 1 } etag) return result;
        // RFC 9110 §13.2.2: If-Match first; If-None-Match on a read answers 304 Not Modified (with the ETag).
        if (ifMatch is not null && !ifMatch.MatchesStrongly(etag.ToString())) return ETags.PreconditionFailed("resource");
        if (ifNoneMatch is not null && ifNoneMatch.MatchesWeakly(etag.ToString())) return TypedResults.StatusCode(StatusCodes.Status304NotModified);
        return result;
    }

    internal static bool IsSuccess(object? result)
    {
        while (result is INestedHttpResult nested) result = nested.Result;
        return result is not IStatusCodeHttpResult { StatusCode: >= 300 };
    }
}

public static class ConditionalRequestExtensions
{
    /// <summary>The route's handler evaluates If-Match / If-None-Match itself (see <see cref="ETags"/>).</summary>
    public static RouteHandlerBuilder WithPreconditions(this RouteHandlerBuilder endpoint) =>
        endpoint.WithMetadata(new AcceptsPreconditions());
}
