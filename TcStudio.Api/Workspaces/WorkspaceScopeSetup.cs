namespace TcStudio.Api.Workspaces;

public static class WorkspaceScopeSetup
{
    public static WebApplicationBuilder AddWorkspaceScope(this WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<CurrentWorkspace>();
        return builder;
    }
}
