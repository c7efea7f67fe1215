namespace TcStudio.Api.Roles;

public sealed record RoleResponse(string Name, string? Description);

public static class RolesApi
{
    public static RouteGroupBuilder MapRolesApi(this RouteGroupBuilder api)
    {
        api.MapGet("/roles", ListRoles).WithTags("Roles").WithSummary("The system roles.");
        return api;
    }

    /// <summary>A handful of fixed roles: one page holding them all, in the offset-list shape.</summary>
    public static async Task<Ok<PagedList<RoleResponse>>> ListRoles(TcStudioDbContext db, CancellationToken cancellationToken) =>
        TypedResults.Ok(ListLinks.Whole(await db.Roles.AsNoTracking().OrderBy(r => r.Name)
            .Select(r => new RoleResponse(r.Name, r.Description)).ToListAsync(cancellationToken)));
}
