using System.ComponentModel.DataAnnotations;

namespace TcStudio.Api.Workspaces;

/// <summary>
/// The configuration section <c>Quotas</c>: how much one user may create. Any signed-in user can create a workspace
/// (and so own it and its environments), so without these one account could fill the servers. System Admins are exempt.
/// </summary>
public sealed class QuotaOptions
{
    public const string SectionName = "Quotas";

    /// <summary>Workspaces one user may own (soft-deleted ones do not count).</summary>
    [Range(1, 1_000_000)]
    public int WorkspacesPerUser { get; set; } = 10;

    /// <summary>Environments (each with its own database and roles) one workspace may have.</summary>
    [Range(1, 10_000)]
    public int EnvironmentsPerWorkspace { get; set; } = 5;
}
