using TcStudio.SystemDatabase.Activities;

namespace TcStudio.SystemDatabase.Migrations;

/// <summary>
/// SQL for the trigger that wakes the live activity stream. Kept apart from the migration so a later migration that
/// must recreate it (a partitioned activity log) can reuse the text of this version.
/// </summary>
/// <remarks>
/// One NOTIFY per statement, carrying only workspace ids (never row data), sorted so that the statements of one
/// transaction that touch the same workspaces send the same payload, which PostgreSQL then delivers once at commit.
/// Statement-level with a transition table, so a COPY of 100,000 rows runs the function once rather than 100,000
/// times. Payloads must stay under 8,000 bytes: past 100 workspaces (3.7 kB of ids) the payload is '*', which wakes
/// every stream of the instance. NOTIFY only wakes: the stream always reads the rows from the table.
/// </remarks>
internal static class ActivityStreamTrigger
{
    public const int MaxWorkspacesPerNotification = 100;

    public static readonly string Create = $"""
        CREATE OR REPLACE FUNCTION activities_notify_stream() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            workspace_ids text;
            workspace_count integer;
        BEGIN
            SELECT string_agg(w.workspace_id::text, ',' ORDER BY w.workspace_id), count(*) INTO workspace_ids, workspace_count
            FROM (SELECT DISTINCT workspace_id FROM inserted WHERE workspace_id IS NOT NULL LIMIT {MaxWorkspacesPerNotification + 1}) w;
            IF workspace_count = 0 THEN
                RETURN NULL;
            END IF;
            PERFORM pg_notify('{ActivityStreamDatabase.NotifyChannel}',
                CASE WHEN workspace_count > {MaxWorkspacesPerNotification} THEN '*' ELSE workspace_ids END);
            RETURN NULL;
        END
        $$;

        DROP TRIGGER IF EXISTS trg_activities_notify_stream ON activities;
        CREATE TRIGGER trg_activities_notify_stream
            AFTER INSERT ON activities REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION activities_notify_stream();
        """;

    public const string Drop = """
        DROP TRIGGER IF EXISTS trg_activities_notify_stream ON activities;
        DROP FUNCTION IF EXISTS activities_notify_stream();
        """;
}
