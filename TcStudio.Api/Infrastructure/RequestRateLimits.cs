using System.Security.Claims;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using TcStudio.Api.Auth;
using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.Api.Infrastructure;

/// <summary>The configuration section <c>RateLimit</c>: the general request limits.</summary>
public sealed class RateLimitOptions
{
    public const string SectionName = "RateLimit";

    public bool Enabled { get; set; } = true;

    /// <summary>Requests a second of one signed-in user, from wherever they come (a burst of as many is allowed).</summary>
    public int PermitsPerSecondPerUser { get; set; } = 100;

    /// <summary>Requests a second from one client address (<see cref="ClientAddress"/>), signed in or not.</summary>
    public int PermitsPerSecondPerAddress { get; set; } = 300;

    public static RateLimitOptions Read(IConfiguration configuration)
    {
        var options = new RateLimitOptions();
        configuration.GetSection(SectionName).Bind(options);
        return options;
    }

    public static IEnumerable<string> FindConfigurationErrors(IConfiguration configuration)
    {
        RateLimitOptions options;
        try
        {
            options = Read(configuration);
        }
        catch (InvalidOperationException e)
        {
            return [OptionsErrors.Describe(e) ?? $"Section '{SectionName}' holds a value that is not a number or true/false."];
        }
        return options.FindError() is { } error ? [error] : [];
    }

    /// <summary>One line naming the first unusable value, or null (the same check as the bound options' ValidateOnStart).</summary>
    public string? FindError() =>
        PermitsPerSecondPerUser < 1 ? $"{SectionName}:PermitsPerSecondPerUser must be 1 or more."
        : PermitsPerSecondPerAddress < 1 ? $"{SectionName}:PermitsPerSecondPerAddress must be 1 or more."
        : null;
}

/// <summary>
/// The general rate limit (ASP.NET Core's rate limiter, in this instance's memory): a token bucket per signed-in user
/// and one per client address, both of which a request must pass. Past either, 429 with Retry-After and a problem.
/// Health probes are not limited. Sign-in failures have their own, stricter limits (<see cref="LoginThrottle"/>).
/// </summary>
public static class RequestRateLimits
{
    public static WebApplicationBuilder AddRequestRateLimits(this WebApplicationBuilder builder)
    {
        var limits = RateLimitOptions.Read(builder.Configuration);
        if (!limits.Enabled) return builder;

        builder.Services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.GlobalLimiter = PartitionedRateLimiter.CreateChained(
                PartitionedRateLimiter.Create<HttpContext, string>(context =>
                    context.User.Identity?.IsAuthenticated == true
                    && context.User.FindFirstValue(TcStudioClaims.UserId) is { } userId
                    && !IsExempt(context)
                        ? RateLimitPartition.GetTokenBucketLimiter(userId, _ => PerSecond(limits.PermitsPerSecondPerUser))
                        : RateLimitPartition.GetNoLimiter("")),
                PartitionedRateLimiter.Create<HttpContext, string>(context =>
                    IsExempt(context)
                        ? RateLimitPartition.GetNoLimiter("")
                        : RateLimitPartition.GetTokenBucketLimiter(ClientAddress.Of(context), _ => PerSecond(limits.PermitsPerSecondPerAddress))));
            options.OnRejected = WriteRejectionAsync;
        });
        return builder;
    }

    /// <summary>After authentication (the per-user limit needs to know the user), before authorization.</summary>
    public static WebApplication UseRequestRateLimits(this WebApplication app)
    {
        if (RateLimitOptions.Read(app.Configuration).Enabled) app.UseRateLimiter();
        return app;
    }

    private static bool IsExempt(HttpContext context) =>
        context.Request.Path.StartsWithSegments(ServiceDefaultsExtensions.HealthEndpointPath)
        || context.Request.Path.StartsWithSegments(ServiceDefaultsExtensions.AlivenessEndpointPath);

    private static TokenBucketRateLimiterOptions PerSecond(int permits) => new()
    {
        TokenLimit = permits,
        TokensPerPeriod = permits,
        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
        QueueLimit = 0,
        AutoReplenishment = true,
    };

    private static async ValueTask WriteRejectionAsync(OnRejectedContext rejected, CancellationToken cancellationToken)
    {
        var retryAfter = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1);
        var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds));
        var http = rejected.HttpContext;
        http.Response.StatusCode = StatusCodes.Status429TooManyRequests;
        http.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = http,
            ProblemDetails =
            {
                Status = StatusCodes.Status429TooManyRequests,
                Title = "Too many requests.",
                Detail = $"This client or user sent more requests than it may in a second; retry after {seconds} s.",
            },
        });
    }
}
