using Scalar.AspNetCore;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The OpenAPI document (/openapi/v1.json) and the Scalar UI (/scalar): served in Development, elsewhere only with
/// <c>Api:OpenApi:Enabled=true</c> (a map of every route helps attackers as much as clients).
/// </summary>
public static class ApiReference
{
    public const string EnabledKey = "Api:OpenApi:Enabled";

    public static bool IsEnabled(IConfiguration configuration, IHostEnvironment environment) =>
        configuration.GetValue<bool?>(EnabledKey) ?? environment.IsDevelopment();

    public static WebApplication MapApiReference(this WebApplication app)
    {
        if (!IsEnabled(app.Configuration, app.Environment)) return app;
        app.MapOpenApi();
        // Scalar signs in with the document's bearer scheme (OpenApiContract): paste the accessToken from POST /api/auth/token.
        app.MapScalarApiReference(options => options.AddPreferredSecuritySchemes(TcStudio.Api.OpenApi.OpenApiContract.BearerScheme));
        return app;
    }
}
