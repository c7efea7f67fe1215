namespace TcStudio.Api.Workspaces;

public static class WorkspaceScopeSetup
{
    public static WebApplicationBuilder AddWorkspaceScope(this WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<CurrentWorkspace>();
        builder.Services.AddOptions<QuotaOptions>().BindConfiguration(QuotaOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        return builder;
    }
}
