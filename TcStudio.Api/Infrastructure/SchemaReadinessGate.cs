using Npgsql;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Until every migration is applied (after a deploy the worker may still be running), data endpoints answer 503 with
/// Retry-After instead of failing on a half-built schema. /health says why in the meantime.
/// </summary>
public static class SchemaReadinessGate
{
    public static WebApplication UseSchemaReadinessGate(this WebApplication app)
    {
        var readiness = app.Services.GetRequiredService<SchemaReadiness>();
        // Once ready, a request goes straight on (no async frame of the gate's own).
        app.UseWhen(context => context.Request.Path.StartsWithSegments("/api"), api => api.Use((context, next) =>
            readiness.IsReady ? next(context) : GateAsync(context, next, readiness)));
        return app;
    }

    private static async Task GateAsync(HttpContext context, RequestDelegate next, SchemaReadiness readiness)
    {
        string? reason = null;
        try
        {
            var pending = await readiness.GetPendingAsync(context.RequestAborted);
            if (pending.Count > 0) reason = $"The database schema is being migrated ({pending.Count} migration(s) pending).";
        }
        catch (NpgsqlException)
        {
            reason = "The service cannot reach its database right now.";
        }
        if (reason is not null)
        {
            context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            context.Response.Headers.RetryAfter = ApiExceptionHandler.RetryAfterSeconds.ToString();
            await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
            {
                HttpContext = context,
                ProblemDetails = { Status = 503, Title = "The service is not ready yet.", Detail = reason + " Try again shortly." },
            });
            return;
        }
        await next(context);
    }
}
