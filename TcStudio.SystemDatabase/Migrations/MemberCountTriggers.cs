namespace TcStudio.SystemDatabase.Migrations;

/// <summary>
/// SQL for the triggers that keep workspaces.member_count equal to the number of memberships. Kept apart from the
/// migration so later migrations that must recreate them can reuse the text of this version.
/// </summary>
internal static class MemberCountTriggers
{
    public const string Create = """
        CREATE FUNCTION workspace_members_count_members() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.workspace_id = NEW.workspace_id THEN
                RETURN NULL;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                UPDATE workspaces SET member_count = member_count + 1 WHERE id = NEW.workspace_id;
            END IF;
            IF TG_OP IN ('DELETE', 'UPDATE') THEN
                UPDATE workspaces SET member_count = member_count - 1 WHERE id = OLD.workspace_id;
            END IF;
            RETURN NULL;
        END
        $$;

        CREATE TRIGGER trg_workspace_members_count_members
            AFTER INSERT OR DELETE OR UPDATE OF workspace_id ON workspace_members
            FOR EACH ROW EXECUTE FUNCTION workspace_members_count_members();

        -- Only the trigger above (which runs one trigger level down) may change member_count.
        CREATE FUNCTION workspaces_guard_member_count() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF pg_trigger_depth() < 2 AND (
                (TG_OP = 'INSERT' AND NEW.member_count <> 0)
                OR (TG_OP = 'UPDATE' AND NEW.member_count IS DISTINCT FROM OLD.member_count)) THEN
                RAISE EXCEPTION 'workspaces.member_count is maintained from workspace_members and cannot be set directly'
                    USING ERRCODE = 'check_violation', TABLE = 'workspaces', COLUMN = 'member_count',
                          CONSTRAINT = 'ck_workspaces_member_count_maintained';
            END IF;
            RETURN NEW;
        END
        $$;

        CREATE TRIGGER trg_workspaces_guard_member_count
            BEFORE INSERT OR UPDATE OF member_count ON workspaces
            FOR EACH ROW EXECUTE FUNCTION workspaces_guard_member_count();
        """;

    public const string Drop = """
        DROP TRIGGER IF EXISTS trg_workspaces_guard_member_count ON workspaces;
        DROP FUNCTION IF EXISTS workspaces_guard_member_count();
        DROP TRIGGER IF EXISTS trg_workspace_members_count_members ON workspace_members;
        DROP FUNCTION IF EXISTS workspace_members_count_members();
        """;
}
