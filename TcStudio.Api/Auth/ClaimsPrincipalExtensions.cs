using System.Security.Claims;

namespace TcStudio.Api.Auth;

public static class TcStudioClaims
{
    public const string UserId = "sub";
    public const string Username = "name";
    public const string Role = "role";
    public const string SecurityStamp = "stamp";
}

public static class ClaimsPrincipalExtensions
{
    public static Guid UserId(this ClaimsPrincipal user) =>
        Guid.TryParse(user.FindFirstValue(TcStudioClaims.UserId), out var id) ? id
            : throw new InvalidOperationException("The request has no authenticated user.");

    public static bool IsSystemAdmin(this ClaimsPrincipal user) => user.IsInRole(Role.Admin);
}
