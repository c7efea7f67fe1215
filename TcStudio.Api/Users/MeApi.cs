using TcStudio.Api.Auth;

namespace TcStudio.Api.Users;

public sealed record MyWorkspace(string Slug, string Name, string Role);

public sealed record MeResponse(Guid Id, string Username, string? DisplayName, string? Email, string Role,
    IReadOnlyList<MyWorkspace> Workspaces);

public static class MeApi
{
    public static RouteGroupBuilder MapMeApi(this RouteGroupBuilder api)
    {
        api.MapGet("/me", GetMe).WithTags("Users").WithSummary("Who the caller is and which workspaces they belong to.");
        return api;
    }

    public static async Task<Results<Ok<MeResponse>, ProblemHttpResult>> GetMe(HttpContext http, TcStudioDbContext db)
    {
        var userId = http.User.UserId();
        var me = await db.Users.AsNoTracking().Where(u => u.Id == userId)
            .Select(u => new
            {
                u.Id, u.Username, u.DisplayName, u.Email, Role = u.Role!.Name,
                Workspaces = db.WorkspaceMembers.Where(m => m.UserId == u.Id)
                    .OrderBy(m => m.Workspace!.Slug)
                    .Select(m => new MyWorkspace(m.Workspace!.Slug, m.Workspace.Name, m.Role)).ToList(),
            })
            .SingleOrDefaultAsync(http.RequestAborted);
        if (me is null) return Problems.NotFound("Your user");
        return TypedResults.Ok(new MeResponse(me.Id, me.Username, me.DisplayName, me.Email, me.Role, me.Workspaces));
    }
}
