using TcStudio.Api.Workspaces;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.UnitTests.Api;

/// <summary>The permission table, role by role, as the README's "Workspace roles" table states it.</summary>
public sealed class WorkspacePermissionsTests
{
    public static TheoryData<string, WorkspacePermission[]> Table => new()
    {
        { WorkspaceRoles.Viewer, [WorkspacePermission.Read] },
        { WorkspaceRoles.Member, [WorkspacePermission.Read, WorkspacePermission.EditDrafts, WorkspacePermission.ExecuteNonProduction] },
        {
            WorkspaceRoles.Admin,
            [
                WorkspacePermission.Read, WorkspacePermission.EditDrafts, WorkspacePermission.ExecuteNonProduction,
                WorkspacePermission.ExecuteProduction, WorkspacePermission.Publish, WorkspacePermission.ManageMembers,
                WorkspacePermission.ManageEnvironments, WorkspacePermission.UpdateWorkspace,
            ]
        },
        { WorkspaceRoles.Owner, Enum.GetValues<WorkspacePermission>() },
    };

    [Theory]
    [MemberData(nameof(Table))]
    public void Each_role_may_do_exactly_what_the_table_says(string role, WorkspacePermission[] granted)
    {
        foreach (var permission in Enum.GetValues<WorkspacePermission>())
        {
            Assert.True(granted.Contains(permission) == WorkspacePermissions.Allows(role, isSystemAdmin: false, permission),
                $"{role} / {permission}");
        }
    }

    [Fact]
    public void A_system_admin_may_do_everything_and_no_role_or_an_unknown_one_nothing()
    {
        foreach (var permission in Enum.GetValues<WorkspacePermission>())
        {
            Assert.True(WorkspacePermissions.Allows(null, isSystemAdmin: true, permission));
            Assert.False(WorkspacePermissions.Allows(null, isSystemAdmin: false, permission));
            Assert.False(WorkspacePermissions.Allows("owner", isSystemAdmin: false, permission)); // role names are exact
            Assert.False(WorkspacePermissions.Allows("Superuser", isSystemAdmin: false, permission));
        }
    }

    [Fact]
    public void Executing_in_production_is_a_permission_of_its_own_taken_from_the_environment_not_its_name()
    {
        Assert.Equal(WorkspacePermission.ExecuteProduction,
            WorkspacePermissions.ExecutePermissionFor(Environment("dev", isProduction: true)));
        Assert.Equal(WorkspacePermission.ExecuteNonProduction,
            WorkspacePermissions.ExecutePermissionFor(Environment("production", isProduction: false)));
    }

    private static WorkspaceEnvironment Environment(string name, bool isProduction) => new()
    {
        Name = name, Provider = WorkspaceProviders.Postgres, Server = "local", DatabaseName = name, IsProduction = isProduction,
    };
}
