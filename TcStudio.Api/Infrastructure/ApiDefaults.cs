
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Json;

namespace TcStudio.Api.Infrastructure;

/// <summary>How every endpoint of the API reads requests and reports errors.</summary>
public static class ApiDefaults
{
    /// <summary>Bodies above 1 MiB are refused with 413 before they are read.</summary>
    public const long MaxRequestBodyBytes = 1024 * 1024;

    public static WebApplicationBuilder AddApiDefaults(this WebApplicationBuilder builder)
    {
        builder.Services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            context.ProblemDetails.Instance ??= context.HttpContext.Request.Path;
            context.ProblemDetails.Extensions["traceId"] = System.Diagnostics.Activity.Current?.TraceId.ToString()
                ?? context.HttpContext.TraceIdentifier;
            ErrorCodes.Assign(context.ProblemDetails, context.HttpContext);
        });
        // After AddProblemDetails' own writer: takes the problems it declines (see AnyAcceptProblemWriter).
        builder.Services.AddSingleton<IProblemDetailsWriter, AnyAcceptProblemWriter>();
        builder.Services.AddExceptionHandler<ApiExceptionHandler>();

        // Bounded waits and safe retries (README, "Robustness").
        builder.Services.AddSingleton<RequestTransactionSettings>();
        builder.Services.AddSingleton<RequestTransactionSettingsInterceptor>();
        builder.Services.AddHttpContextAccessor();
        builder.Services.AddScoped<RequestRowSecurity>();
        builder.Services.AddSingleton<IdempotencyRecordInterceptor>();
        // After AddTcStudioData's configuration, so these run after the audit-timestamps interceptor.
        builder.Services.ConfigureDbContext<TcStudioDbContext>((sp, options) => options.AddInterceptors(
            sp.GetRequiredService<RequestTransactionSettingsInterceptor>(), sp.GetRequiredService<IdempotencyRecordInterceptor>()));
        builder.Services.AddOptions<IdempotencyOptions>().BindConfiguration(IdempotencyOptions.SectionName)
            .Validate(o => o.KeyLifetime > TimeSpan.Zero && o.CleanupInterval > TimeSpan.Zero,
                "Idempotency:KeyLifetime and Idempotency:CleanupInterval must be positive (hh:mm:ss).")
            .ValidateOnStart();
        builder.Services.AddScoped<IdempotentRequests>();
        builder.Services.AddSingleton<InFlightIdempotencyKeys>();
        builder.Services.AddSingleton<IdempotencyKeyCleanup>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<IdempotencyKeyCleanup>());

        builder.Services.Configure<JsonOptions>(options =>
        {
            // Strict input: unknown fields, nulls where a value is required and missing required fields are 400s.
            options.SerializerOptions.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
            options.SerializerOptions.RespectNullableAnnotations = true;
            options.SerializerOptions.RespectRequiredConstructorParameters = true;
            options.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
            // A property twice in one object is refused, not "last one wins" (RequestGuards also compares ignoring case).
            options.SerializerOptions.AllowDuplicateProperties = false;
        });
        // Binding failures throw, so ApiExceptionHandler answers them with problem details naming the field.
        builder.Services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = MaxRequestBodyBytes);

        builder.Services.AddOpenApi(TcStudio.Api.OpenApi.OpenApiContract.Configure);
        builder.Services.AddHostedService<MigrateOnStartup>();
        return builder;
    }

    public static WebApplication UseApiDefaults(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseDotSegmentGuard();
        app.Use(RefuseOversizedBodies);
        RequestTransactionSettings.UseRequestTransactionSettings(app);
        return app;
    }

    /// <summary>After authorization: bodies are looked at only once the caller is known (see <see cref="RequestGuards"/>).</summary>
    public static WebApplication UseRequestGuards(this WebApplication app)
    {
        app.UseRequestBodyGuard();
        return app;
    }

    /// <summary>
    /// Filters every endpoint under /api gets before its own: malformed or unsupported conditional headers
    /// (<see cref="ConditionalRequestFilter"/>), Idempotency-Key on routes that cannot honour it, then the request's
    /// unit of work (<see cref="RequestUnitOfWork"/>: its transaction and execution strategy).
    /// </summary>
    public static RouteGroupBuilder WithApiRequestGuards(this RouteGroupBuilder api)
    {
        api.AddEndpointFilter<ConditionalRequestFilter>();
        api.AddEndpointFilter<IdempotencyKeyGuardFilter>();
        api.AddEndpointFilter<RequestUnitOfWork>();
        return api;
    }

    /// <summary>
    /// Kestrel enforces the limit on the wire; this also refuses a declared oversized body up front (and under the
    /// in-memory test server, which has no Kestrel limits).
    /// </summary>
    private static Task RefuseOversizedBodies(HttpContext context, RequestDelegate next) =>
        context.Request.ContentLength > MaxRequestBodyBytes ? WriteTooLargeAsync(context) : next(context);

    private static async Task WriteTooLargeAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
        await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails =
            {
                Status = StatusCodes.Status413PayloadTooLarge,
                Title = "The request body is too large.",
                Detail = $"Request bodies are limited to {MaxRequestBodyBytes / 1024} KiB.",
            },
        });
    }
}
