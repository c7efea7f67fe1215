using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.Tokens;
using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.Api.Auth;

public static class AuthenticationSetup
{
    public const string SystemAdminPolicy = "SystemAdmin";

    /// <summary>JWT bearer authentication with revocation (<see cref="UserSessions"/>) and the SystemAdmin policy.</summary>
    public static WebApplicationBuilder AddTcStudioAuthentication(this WebApplicationBuilder builder)
    {
        // The signing key itself is checked by the start-up checks (they know the environment); the rest here, at start.
        builder.Services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.SectionName)
            .ValidateWith(options =>
                options.TokenLifetime <= TimeSpan.Zero ? $"{AuthOptions.SectionName}:TokenLifetime must be a positive duration (hh:mm:ss)."
                : options.SessionCheckInterval < TimeSpan.Zero ? $"{AuthOptions.SectionName}:SessionCheckInterval must not be negative."
                : options.LoginRateLimit.FindError())
            .ValidateOnStart();
        builder.Services.AddSingleton(sp => SigningKeys.Resolve(
            sp.GetRequiredService<IConfiguration>(), sp.GetRequiredService<IHostEnvironment>()));
        builder.Services.AddSingleton<TokenIssuer>();
        builder.Services.AddSingleton<UserSessions>();
        builder.Services.AddSingleton<LoginThrottle>();
        builder.Services.AddHostedService<LoginFailureCleanup>();

        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<SymmetricSecurityKey>((jwt, key) =>
            {
                jwt.MapInboundClaims = false;
                jwt.TokenValidationParameters = new TokenValidationParameters
                {
                    ValidIssuer = AuthOptions.Issuer,
                    ValidAudience = AuthOptions.Audience,
                    IssuerSigningKey = key,
                    ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
                    ClockSkew = TimeSpan.FromSeconds(30),
                    NameClaimType = TcStudioClaims.Username,
                    RoleClaimType = TcStudioClaims.Role,
                };
                jwt.Events = new JwtBearerEvents
                {
                    OnTokenValidated = async context =>
                    {
                        var sessions = context.HttpContext.RequestServices.GetRequiredService<UserSessions>();
                        if (!await sessions.ValidateAsync(context.Principal!, context.HttpContext.RequestAborted))
                        {
                            context.Fail("The token was revoked.");
                        }
                    },
                };
            });

        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(SystemAdminPolicy, policy => policy.RequireRole(Role.Admin));
        return builder;
    }
}
