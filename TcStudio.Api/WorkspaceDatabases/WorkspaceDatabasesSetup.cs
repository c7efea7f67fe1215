using TcStudio.WorkspaceDatabases;

namespace TcStudio.Api.WorkspaceDatabases;

public static class WorkspaceDatabasesSetup
{
    /// <summary>The workspace-database layer (servers, providers, connection cache, metrics) for the API.</summary>
    public static WebApplicationBuilder AddWorkspaceDatabases(this WebApplicationBuilder builder)
    {
        WorkspaceDatabasesExtensions.AddWorkspaceDatabases(builder);
        builder.Services.AddSingleton<Procedures.ExecutionSlots>();
        return builder;
    }
}
