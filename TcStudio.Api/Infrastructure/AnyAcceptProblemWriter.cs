using System.Text.Json;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The built-in problem writer declines a request whose Accept names neither JSON nor a wildcard (an event-stream
/// client sends <c>Accept: text/event-stream</c>), and the result then writes the bare problem itself, skipping
/// CustomizeProblemDetails: no <c>code</c>, no <c>traceId</c>. Registered after the built-in writer, this one takes
/// those requests, so every problem goes out the same way: application/problem+json, customized.
/// </summary>
public sealed class AnyAcceptProblemWriter(IOptions<ProblemDetailsOptions> problemOptions, IOptions<JsonOptions> jsonOptions) : IProblemDetailsWriter
{
    public bool CanWrite(ProblemDetailsContext context) => true;

    public async ValueTask WriteAsync(ProblemDetailsContext context)
    {
        problemOptions.Value.CustomizeProblemDetails?.Invoke(context);
        var http = context.HttpContext;
        http.Response.ContentType = "application/problem+json";
        var problem = context.ProblemDetails;
        await JsonSerializer.SerializeAsync(http.Response.Body, problem, problem.GetType(), jsonOptions.Value.SerializerOptions, http.RequestAborted);
    }
}
