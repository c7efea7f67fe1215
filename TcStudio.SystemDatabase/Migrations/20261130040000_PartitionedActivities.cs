using Microsoft.EntityFrameworkCore.Migrations;
using TcStudio.SystemDatabase.Activities;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <summary>
    /// Converts <c>activities</c> into a table range-partitioned by month on <c>created_at</c>, with primary key
    /// (created_at, id) (see <see cref="ActivityPartitions"/> for the choice), and back on Down. The EF model keeps
    /// <c>Id</c> as the entity's key (ids are UUIDv7, unique by construction); only the database's key changes.
    /// <para>
    /// Writers are blocked only for the last step. In three steps, each of which can be re-run after a failure:
    /// </para>
    /// <list type="number">
    /// <item>create the new table (<c>activities_converting</c>) with its partitions: every month from the oldest
    /// row's to two months ahead, without a gap, and the default partition;</item>
    /// <item>outside any lock, copy every row in one statement, recording that statement's snapshot;</item>
    /// <item>lock the old table (ACCESS EXCLUSIVE, waiting at most 10 s), copy the tail (rows whose inserting
    /// transaction the copy's snapshot did not see: <c>xid</c> is the inserting transaction's id), drop the old table,
    /// rename the new one into place, and give it the old one's grants, trigger and row-level security.</item>
    /// </list>
    /// The tail step reads the old table once (a sequential scan) and writes only the rows added during the copy:
    /// on 1,000,000 rows it blocks writers for a fraction of a second (the benchmark's scenario 11 measures it).
    /// </summary>
    public partial class PartitionedActivities : Migration
    {
        private const string Columns = "id, workspace_id, user_id, action, entity_type, entity_id, details, created_at, xid";

        private const string ColumnDefinitions = """
                id uuid NOT NULL,
                workspace_id uuid NULL,
                user_id uuid NULL,
                action character varying(64) NOT NULL,
                entity_type character varying(32) NOT NULL,
                entity_id uuid NULL,
                details jsonb NULL,
                created_at timestamp with time zone NOT NULL DEFAULT now(),
                xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                CONSTRAINT ck_activities_action_format CHECK (action ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
                CONSTRAINT ck_activities_details_object CHECK (details IS NULL OR jsonb_typeof(details) = 'object'),
                CONSTRAINT ck_activities_entity_type CHECK (entity_type IN ('user', 'role', 'workspace', 'member', 'environment', 'procedure', 'system')),
                CONSTRAINT fk_activities_users FOREIGN KEY (user_id) REFERENCES public.users (id) ON DELETE SET NULL,
                CONSTRAINT fk_activities_workspaces FOREIGN KEY (workspace_id) REFERENCES public.workspaces (id) ON DELETE CASCADE,
        """;

        private const string Indexes = """
                CREATE INDEX ix_activities_converting_created_at ON public.activities_converting (workspace_id, created_at DESC, id DESC);
                CREATE INDEX ix_activities_converting_xid ON public.activities_converting (workspace_id, xid, id);
        """;

        /// <summary>Step 1 towards the partitioned table: nothing to do when activities is partitioned already.</summary>
        public const string CreatePartitioned = $$"""
            DO $$
            DECLARE
                month timestamp;
            BEGIN
                IF (SELECT relkind FROM pg_class WHERE oid = 'public.activities'::regclass) = 'p' THEN
                    RETURN;
                END IF;
                DROP TABLE IF EXISTS public.activities_converting;
                DROP TABLE IF EXISTS public.activities_conversion_snapshot;
                CREATE TABLE public.activities_converting (
                    {{ColumnDefinitions}}
                    CONSTRAINT pk_activities_converting PRIMARY KEY (created_at, id)
                ) PARTITION BY RANGE (created_at);
                -- Every month, without a gap, from the oldest row's to the newest row's or two months ahead, whichever is
                -- later (at most 600 months, and at most a year ahead: rows beyond go to the default partition). The
                -- worker keeps creating them ahead from then on. A gapless run is what lets a page skip the default
                -- partition (ActivityPartitions.ContiguousSpan).
                FOR month IN
                    SELECT generate_series(greatest(span.oldest, span.newest - interval '599 months'), span.newest, interval '1 month')
                    FROM (
                        SELECT least(coalesce(r.oldest, n.this_month), n.this_month) AS oldest,
                               greatest(least(coalesce(r.newest, n.this_month), n.this_month + interval '12 months'), n.this_month + interval '2 months') AS newest
                        FROM (SELECT date_trunc('month', min(created_at) AT TIME ZONE 'UTC') AS oldest,
                                     date_trunc('month', max(created_at) AT TIME ZONE 'UTC') AS newest FROM public.activities) r,
                             (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS this_month) n) span
                LOOP
                    EXECUTE format('CREATE TABLE public.%I PARTITION OF public.activities_converting FOR VALUES FROM (%L) TO (%L)',
                        'activities_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM'),
                        month AT TIME ZONE 'UTC', (month + interval '1 month') AT TIME ZONE 'UTC');
                END LOOP;
                CREATE TABLE public.activities_default PARTITION OF public.activities_converting DEFAULT;
                {{Indexes}}
                CREATE TABLE public.activities_conversion_snapshot (snapshot pg_snapshot NOT NULL);
            END
            $$;
            """;

        /// <summary>Step 1 back to the plain table: nothing to do when activities is a plain table already.</summary>
        public const string CreatePlain = $$"""
            DO $$
            BEGIN
                IF (SELECT relkind FROM pg_class WHERE oid = 'public.activities'::regclass) = 'r' THEN
                    RETURN;
                END IF;
                DROP TABLE IF EXISTS public.activities_converting;
                DROP TABLE IF EXISTS public.activities_conversion_snapshot;
                CREATE TABLE public.activities_converting (
                    {{ColumnDefinitions}}
                    CONSTRAINT pk_activities_converting PRIMARY KEY (id)
                );
                {{Indexes}}
                CREATE TABLE public.activities_conversion_snapshot (snapshot pg_snapshot NOT NULL);
            END
            $$;
            """;

        /// <summary>
        /// Step 2: the bulk copy, outside any lock. One statement, so the snapshot it records is the one it copied
        /// with (the data-modifying CTE runs whether or not it is referenced).
        /// </summary>
        public const string CopyBulk = $$"""
            -- PartitionedActivities, step 2 of 3: the bulk copy, outside any transaction of EF's (its own).
            DO $$
            BEGIN
                IF to_regclass('public.activities_conversion_snapshot') IS NULL THEN
                    RETURN;
                END IF;
                TRUNCATE public.activities_converting, public.activities_conversion_snapshot;
                WITH recorded AS (INSERT INTO public.activities_conversion_snapshot SELECT pg_current_snapshot())
                INSERT INTO public.activities_converting ({{Columns}}) SELECT {{Columns}} FROM public.activities;
            END
            $$;
            ANALYZE public.activities_converting;
            """;

        /// <summary>
        /// Step 3, the only one that blocks writers (and readers): the tail, the swap, grants, trigger, row-level
        /// security. The old table's privileges and owner are copied to the new one, whatever the role names.
        /// </summary>
        public static readonly string SwapIn = $$"""
            DO $$
            DECLARE
                copied pg_snapshot;
                grant_row record;
                part_table regclass;
            BEGIN
                IF to_regclass('public.activities_conversion_snapshot') IS NULL THEN
                    RETURN;
                END IF;
                PERFORM set_config('lock_timeout', '10s', true);
                LOCK TABLE public.activities IN ACCESS EXCLUSIVE MODE;
                SELECT snapshot INTO copied FROM public.activities_conversion_snapshot;
                INSERT INTO public.activities_converting ({{Columns}})
                SELECT {{Columns}} FROM public.activities
                WHERE CASE WHEN xid >= pg_snapshot_xmin(copied) THEN NOT pg_visible_in_snapshot(xid, copied) ELSE false END;

                EXECUTE format('ALTER TABLE public.activities_converting OWNER TO %I',
                    (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.activities'::regclass));
                FOR part_table IN SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = 'public.activities_converting'::regclass LOOP
                    EXECUTE format('ALTER TABLE %s OWNER TO %I', part_table,
                        (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.activities'::regclass));
                END LOOP;
                FOR grant_row IN
                    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
                    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
                    WHERE c.oid = 'public.activities'::regclass AND a.grantee <> c.relowner
                LOOP
                    EXECUTE format('GRANT %s ON public.activities_converting TO %s', grant_row.privilege_type, grant_row.grantee);
                END LOOP;

                DROP TABLE public.activities;
                DROP TABLE public.activities_conversion_snapshot;
                ALTER TABLE public.activities_converting RENAME TO activities;
                ALTER TABLE public.activities RENAME CONSTRAINT pk_activities_converting TO pk_activities;
                ALTER INDEX public.ix_activities_converting_created_at RENAME TO ix_activities_workspace_id_created_at;
                ALTER INDEX public.ix_activities_converting_xid RENAME TO ix_activities_workspace_id_xid;

                ALTER TABLE public.activities ENABLE ROW LEVEL SECURITY;
                ALTER TABLE public.activities FORCE ROW LEVEL SECURITY;
                CREATE POLICY workspace_isolation ON public.activities
                    USING (workspace_id = nullif(current_setting('tcstudio.workspace_id', true), '')::uuid)
                    WITH CHECK (workspace_id IS NULL OR workspace_id = nullif(current_setting('tcstudio.workspace_id', true), '')::uuid);
            END
            $$;
            """ + ActivityStreamTrigger.Create + "\n" + ActivityPartitions.SealPartitionsSql;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(CreatePartitioned);
            migrationBuilder.Sql(CopyBulk, suppressTransaction: true);
            migrationBuilder.Sql(SwapIn);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(CreatePlain);
            migrationBuilder.Sql(CopyBulk, suppressTransaction: true);
            migrationBuilder.Sql(SwapIn);
        }
    }
}
