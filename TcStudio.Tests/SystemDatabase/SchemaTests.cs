using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>The schema as PostgreSQL itself reports it (pg_catalog), not as the model claims it.</summary>
public sealed class SchemaTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task Every_table_of_the_design_exists_with_the_history_table_named_migrations()
    {
        var tables = await database.ColumnAsync(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition "
            + "ORDER BY relname");

        Assert.Equal(
            ["activities", "database_size_samples", "idempotency_keys", "login_failures", "migrations", "roles", "stored_procedures", "users",
             "workspace_databases", "workspace_environments", "workspace_members", "workspaces"],
            tables);
    }

    [Fact]
    public async Task Columns_are_snake_case_keys_are_uuid_and_timestamps_are_timestamptz()
    {
        var columns = await database.ColumnAsync("""
            SELECT table_name || '.' || column_name || ':' || data_type
            FROM information_schema.columns WHERE table_schema = 'public'
              AND table_name NOT IN (SELECT relname FROM pg_class WHERE relispartition) -- the activity log's monthly partitions
            ORDER BY 1
            """);

        Assert.All(columns, c => Assert.Matches("^[a-z_]+\\.[a-z_]+:", c));
        Assert.Contains("users.id:uuid", columns);
        Assert.Contains("workspaces.id:uuid", columns);
        Assert.Contains("stored_procedures.id:uuid", columns);
        Assert.Contains("activities.id:uuid", columns);
        Assert.Contains("workspaces.settings:jsonb", columns);
        Assert.Contains("activities.details:jsonb", columns);
        Assert.Contains("stored_procedures.search_vector:tsvector", columns);
        Assert.All(columns.Where(c => c.Contains("_at:")), c => Assert.EndsWith(":timestamp with time zone", c));
    }

    [Fact]
    public async Task Length_limits_live_in_the_column_types()
    {
        var lengths = await database.ColumnAsync("""
            SELECT table_name || '.' || column_name || '=' || character_maximum_length
            FROM information_schema.columns
            WHERE table_schema = 'public' AND character_maximum_length IS NOT NULL ORDER BY 1
            """);

        Assert.Contains("users.username=64", lengths);
        Assert.Contains("workspaces.name=200", lengths);
        Assert.Contains("workspaces.slug=63", lengths);
        Assert.Contains("stored_procedures.name=128", lengths);
        Assert.Contains("workspace_environments.name=63", lengths);
    }

    [Fact]
    public async Task Every_enum_like_column_has_a_check_constraint()
    {
        var checks = await database.ColumnAsync(
            "SELECT conname FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace ORDER BY 1");

        Assert.Contains("ck_roles_name", checks);
        Assert.Contains("ck_workspace_members_role", checks);
        Assert.Contains("ck_workspace_environments_provider", checks);
        Assert.Contains("ck_workspace_environments_status", checks);
        Assert.Contains("ck_workspace_databases_state", checks);
        Assert.Contains("ck_workspace_databases_attached_environment", checks);
        Assert.Contains("ck_stored_procedures_status", checks);
        Assert.Contains("ck_activities_entity_type", checks);
        Assert.Contains("ck_workspaces_slug_format", checks);
        Assert.Contains("ck_users_username_format", checks);
        Assert.All(checks, c => Assert.StartsWith("ck_", c));
    }

    [Fact]
    public async Task Unique_indexes_cover_the_rules_case_insensitively_where_asked()
    {
        var indexes = await database.ColumnAsync("""
            SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1
            """);

        Assert.Contains(indexes, i => i.StartsWith("ux_users_username ") && i.Contains("UNIQUE") && i.Contains("lower((username)"));
        Assert.Contains(indexes, i => i.StartsWith("ux_users_email ") && i.Contains("lower((email)"));
        Assert.Contains(indexes, i => i.StartsWith("ux_workspaces_slug ") && i.Contains("UNIQUE"));
        Assert.Contains(indexes, i => i.StartsWith("ux_roles_name ") && i.Contains("UNIQUE"));
        Assert.Contains(indexes, i => i.StartsWith("ux_stored_procedures_workspace_id_name ")
            && i.Contains("(workspace_id, lower((name)"));
        Assert.Contains(indexes, i => i.StartsWith("ux_workspace_environments_workspace_id_name ") && i.Contains("UNIQUE"));
        // A database is claimed once per physical server, whatever the case of its name and the claim's state.
        Assert.Contains(indexes, i => i.StartsWith("ux_workspace_databases_server_identity_database_name ")
            && i.Contains("UNIQUE") && i.Contains("(server_identity, lower((database_name)"));
        Assert.Contains(indexes, i => i.StartsWith("pk_workspace_members ") && i.Contains("(workspace_id, user_id)"));
        // Uniqueness covers soft-deleted rows: no partial index.
        Assert.DoesNotContain(indexes, i => i.StartsWith("ux_") && i.Contains(" WHERE "));
    }

    [Fact]
    public async Task Workspace_scoped_indexes_lead_with_workspace_id_and_search_uses_gin()
    {
        var indexes = await database.ColumnAsync("""
            SELECT indexname || ' ' || indexdef FROM pg_indexes
            WHERE schemaname = 'public' AND tablename IN ('stored_procedures', 'activities', 'workspace_environments')
            ORDER BY 1
            """);

        Assert.Contains(indexes, i => i.StartsWith("ix_stored_procedures_workspace_id_updated_at ")
            && i.Contains("(workspace_id, updated_at)"));
        Assert.Contains(indexes,
            i => i.StartsWith("ix_stored_procedures_workspace_id_search_vector ") && i.Contains("USING gin (workspace_id, search_vector)"));
        Assert.Contains(indexes, i => i.StartsWith("ix_activities_workspace_id_created_at ")
            && i.Contains("(workspace_id, created_at DESC, id DESC)"));
        // No stand-alone workspace_id index duplicating the composite one.
        Assert.DoesNotContain(indexes, i => i.EndsWith("(workspace_id)"));
        Assert.All(indexes.Where(i => !i.StartsWith("pk_") && !i.Contains("USING gin")),
            i => Assert.Contains("(workspace_id", i));
    }

    [Fact]
    public async Task Foreign_keys_have_deliberate_delete_rules()
    {
        var rules = await database.ColumnAsync("""
            SELECT conname || ':' || confdeltype::text FROM pg_constraint
            WHERE contype = 'f' AND connamespace = 'public'::regnamespace
              AND conparentid = 0 -- a partitioned table's foreign keys, not their copies on each partition
            ORDER BY 1
            """);

        // c = cascade, r = restrict, n = set null
        Assert.Equal(
            ["fk_activities_users:n", "fk_activities_workspaces:c", "fk_idempotency_keys_users:c", "fk_stored_procedures_users:r",
             "fk_stored_procedures_workspaces:c", "fk_users_roles:r",
             // An environment whose database is still attached cannot go: its claim is detached or dropped first.
             "fk_workspace_databases_workspace_environments:r", "fk_workspace_environments_workspaces:c",
             "fk_workspace_members_users:c", "fk_workspace_members_workspaces:c", "fk_workspaces_users:r"],
            rules);
    }

    [Fact]
    public async Task Member_count_is_kept_by_triggers()
    {
        var triggers = await database.ColumnAsync(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1");

        // The live-events trigger notifies once per transaction (see ActivityEventsTests).
        Assert.Equal(["trg_activities_notify_stream", "trg_workspace_members_count_members", "trg_workspaces_guard_member_count"], triggers);
    }
}
