using TcStudio.Api.Workspaces;

namespace TcStudio.Tests.Infrastructure;

public static class WorkspaceDetailsExtensions
{
    /// <summary>
    /// What most arrange steps need of a new workspace:
    /// <c>var (slug, workspaceId) = await ApiFixture.NewWorkspaceAsync(owner, "prefix");</c>.
    /// </summary>
    public static void Deconstruct(this WorkspaceDetails workspace, out string slug, out Guid id) =>
        (slug, id) = (workspace.Slug, workspace.Id);
}
