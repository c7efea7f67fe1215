using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <summary>
    /// What running the API as the app role needed (catalog changes only; the model is unchanged, so no designer file):
    /// <list type="bullet">
    /// <item>the SECURITY DEFINER functions for what a system Admin does across workspaces: <c>memberships_of_user</c>
    /// (deleting a user) and <c>reattach_detached_database</c> (adopting another workspace's detached database);</item>
    /// <item>an activity of no workspace (a user or role change, a purged workspace) may be written whatever workspace
    /// the request is in: the API never reads those rows back, and the workspace setting exists to keep workspaces
    /// apart, which they are not part of;</item>
    /// <item>pg_stat_statements for the slow-query insights, where the server preloads it and the migrating role may
    /// create it. It is not a trusted extension: the owner role (not a superuser) cannot, so the worker's <c>roles</c>
    /// step creates it with the admin credential (<c>SystemDatabaseRoles</c>) and this migration only notes that it is
    /// missing.</item>
    /// </list>
    /// </summary>
    [DbContext(typeof(TcStudioDbContext))]
    [Migration("20261130030000_LeastPrivilege")]
    public sealed class LeastPrivilege : Migration
    {
        private static readonly string ActivitiesPolicy = $"""
            DROP POLICY workspace_isolation ON activities;
            CREATE POLICY workspace_isolation ON activities
                USING (workspace_id = {RowLevelSecurityPolicies.CurrentWorkspace})
                WITH CHECK (workspace_id IS NULL OR workspace_id = {RowLevelSecurityPolicies.CurrentWorkspace});
            """;

        private static readonly string PreviousActivitiesPolicy = $"""
            DROP POLICY workspace_isolation ON activities;
            CREATE POLICY workspace_isolation ON activities
                USING (workspace_id = {RowLevelSecurityPolicies.CurrentWorkspace})
                WITH CHECK (workspace_id IS NOT DISTINCT FROM {RowLevelSecurityPolicies.CurrentWorkspace});
            """;

        internal const string CreateWhereAllowed = """
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements') THEN
                    RETURN;
                ELSIF NOT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_stat_statements')
                      OR position('pg_stat_statements' IN current_setting('shared_preload_libraries')) = 0 THEN
                    RAISE NOTICE 'pg_stat_statements is not preloaded on this server: slow-query insights use the in-memory log';
                ELSIF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                    CREATE EXTENSION pg_stat_statements;
                ELSE
                    RAISE NOTICE 'pg_stat_statements needs a superuser to create it: the worker''s roles step does (ConnectionStrings:postgres)';
                END IF;
            END $$;
            """;

        /// <summary>
        /// A user's memberships in every workspace, for a system Admin deleting that user: a cross-workspace read, which
        /// row-level security hides from the app role, so it is a SECURITY DEFINER function (the <c>roles</c> step hands
        /// it to the definer role, which bypasses row-level security and may only read). It answers only a request whose
        /// <c>tcstudio.user_id</c> is an active system Admin. Each row says whether the user is that workspace's only Owner.
        /// </summary>
        internal const string MembershipsOfUser = """
            CREATE FUNCTION memberships_of_user(target_user uuid)
            RETURNS TABLE (workspace_id uuid, slug text, role text, workspace_deleted boolean, other_owners integer)
            LANGUAGE plpgsql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, public, pg_temp
            AS $fn$
            BEGIN
                IF NOT EXISTS (SELECT FROM users u JOIN roles r ON r.id = u.role_id
                               WHERE u.id = nullif(current_setting('tcstudio.user_id', true), '')::uuid
                                 AND r.name = 'Admin' AND u.is_active AND u.deleted_at IS NULL) THEN
                    RAISE EXCEPTION 'memberships_of_user answers system Admins only' USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN QUERY
                    SELECT m.workspace_id, w.slug::text, m.role::text, w.deleted_at IS NOT NULL,
                           (SELECT count(*)::int FROM workspace_members o
                             WHERE o.workspace_id = m.workspace_id AND o.role = 'Owner' AND o.user_id <> target_user)
                    FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
                    WHERE m.user_id = target_user
                    ORDER BY w.slug;
            END
            $fn$;
            REVOKE EXECUTE ON FUNCTION memberships_of_user(uuid) FROM PUBLIC;
            """;

        /// <summary>
        /// A system Admin adopting a detached database (its environment deleted, or its workspace purged) into the
        /// workspace the request is in: the claim row belongs to the old workspace, which row-level security hides, so
        /// the one statement that hands it over is a SECURITY DEFINER function (the definer may read every claim and
        /// update only this table). It acts only for an active system Admin, and only into the request's own workspace.
        /// </summary>
        internal const string ReattachDetachedDatabase = """
            CREATE FUNCTION reattach_detached_database(
                new_environment uuid, new_workspace uuid, new_server text, new_owner_role text, new_execute_role text,
                new_owner_secret bytea, new_execute_secret bytea, at_time timestamptz, on_server_identity text, named text)
            RETURNS TABLE (id uuid, previous_owner_role text, previous_execute_role text)
            LANGUAGE plpgsql VOLATILE SECURITY DEFINER
            SET search_path = pg_catalog, public, pg_temp
            AS $fn$
            #variable_conflict use_column
            BEGIN
                IF NOT EXISTS (SELECT FROM users u JOIN roles r ON r.id = u.role_id
                               WHERE u.id = nullif(current_setting('tcstudio.user_id', true), '')::uuid
                                 AND r.name = 'Admin' AND u.is_active AND u.deleted_at IS NULL)
                   OR new_workspace IS DISTINCT FROM nullif(current_setting('tcstudio.workspace_id', true), '')::uuid THEN
                    RAISE EXCEPTION 'reattach_detached_database acts for a system Admin, into the request''s workspace only'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN QUERY
                    UPDATE workspace_databases d
                       SET state = 'attached', environment_id = new_environment, workspace_id = new_workspace, origin = 'adopted',
                           server = new_server, owner_role = new_owner_role, execute_role = new_execute_role,
                           owner_secret = new_owner_secret, execute_secret = new_execute_secret, detached_at = NULL, updated_at = at_time
                      FROM (SELECT w.id, w.owner_role, w.execute_role FROM workspace_databases w
                             WHERE w.server_identity = on_server_identity AND lower(w.database_name) = lower(named) AND w.state = 'detached'
                             FOR UPDATE) previous
                     WHERE d.id = previous.id
                    RETURNING d.id, previous.owner_role::text, previous.execute_role::text;
            END
            $fn$;
            REVOKE EXECUTE ON FUNCTION reattach_detached_database(uuid, uuid, text, text, text, bytea, bytea, timestamptz, text, text) FROM PUBLIC;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(ActivitiesPolicy);
            migrationBuilder.Sql(MembershipsOfUser);
            migrationBuilder.Sql(ReattachDetachedDatabase);
            migrationBuilder.Sql(CreateWhereAllowed);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(DropWhereAllowed);
            migrationBuilder.Sql("DROP FUNCTION memberships_of_user(uuid);");
            migrationBuilder.Sql("DROP FUNCTION reattach_detached_database(uuid, uuid, text, text, text, bytea, bytea, timestamptz, text, text);");
            migrationBuilder.Sql(PreviousActivitiesPolicy);
        }

        /// <summary>Reverting to nothing leaves nothing: the extension goes too where the reverting role may drop it.</summary>
        private const string DropWhereAllowed = """
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')
                   AND ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                        OR (SELECT pg_has_role(extowner, 'USAGE') FROM pg_extension WHERE extname = 'pg_stat_statements')) THEN
                    DROP EXTENSION pg_stat_statements;
                END IF;
            END $$;
            """;
    }
}
