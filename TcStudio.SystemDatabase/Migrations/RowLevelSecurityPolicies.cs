namespace TcStudio.SystemDatabase.Migrations;

/// <summary>
/// The seal between workspaces, in PostgreSQL: a row of a workspace-scoped table is visible and writable only in a
/// transaction that declared its workspace with <c>set_config('tcstudio.workspace_id', &lt;id&gt;, true)</c>. With no
/// setting a role subject to row-level security (the API's app role) sees no rows and may write none. Memberships
/// are also readable by their own user (<c>tcstudio.user_id</c>): "my workspaces" spans workspaces.
/// FORCE applies the policies to the tables' owner too; roles with BYPASSRLS (the owner role that migrates and seeds,
/// the backup role, the definer of the cross-workspace functions) and superusers are not subject to them.
/// Activities of no workspace (user and role changes) may be written with no workspace setting, and since migration
/// LeastPrivilege in any workspace's; the API never reads them back.
/// </summary>
internal static class RowLevelSecurityPolicies
{
    /// <summary>Every table with a workspace_id column. A test fails when a table has one and is missing here.</summary>
    public static readonly string[] WorkspaceScopedTables =
        ["workspace_members", "workspace_environments", "stored_procedures", "activities", "workspace_databases"];

    public const string CurrentWorkspace = "nullif(current_setting('tcstudio.workspace_id', true), '')::uuid";
    public const string CurrentUser = "nullif(current_setting('tcstudio.user_id', true), '')::uuid";

    public static string Create => string.Concat(WorkspaceScopedTables.Select(table => $"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY workspace_isolation ON {table}
            USING (workspace_id = {CurrentWorkspace})
            WITH CHECK ({(table == "activities" ? $"workspace_id IS NOT DISTINCT FROM {CurrentWorkspace}" : $"workspace_id = {CurrentWorkspace}")});

        """)) + $"""
        CREATE POLICY own_memberships ON workspace_members FOR SELECT
            USING (user_id = {CurrentUser});
        """;

    public static string Drop => "DROP POLICY own_memberships ON workspace_members;\n" + string.Concat(WorkspaceScopedTables.Select(table => $"""
        DROP POLICY workspace_isolation ON {table};
        ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;

        """));
}
