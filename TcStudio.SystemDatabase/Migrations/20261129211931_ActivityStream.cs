using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <summary>
    /// The live activity stream (GET /api/workspaces/{slug}/events): activities.xid, the id of the inserting
    /// transaction (the stream's commit-safe order), the trigger that NOTIFYs workspace ids, and the index the stream
    /// reads by. Fast on a big table: the column is added with a constant default (no rewrite; every existing row has
    /// committed, so 0 orders them first), and only then does the default become pg_current_xact_id(); the index is
    /// built CONCURRENTLY outside the transaction. Every step can be re-run after a failure part-way.
    /// </summary>
    public partial class ActivityStream : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("ALTER TABLE activities ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT '0';");
            migrationBuilder.Sql("ALTER TABLE activities ALTER COLUMN xid SET DEFAULT pg_current_xact_id();");
            migrationBuilder.Sql(ActivityStreamTrigger.Create);
            // A CREATE INDEX CONCURRENTLY that failed part-way leaves an invalid index behind: drop it so a re-run works.
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_activities_workspace_id_xid;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY ix_activities_workspace_id_xid ON activities (workspace_id, xid, id);",
                suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_activities_workspace_id_xid;", suppressTransaction: true);
            migrationBuilder.Sql(ActivityStreamTrigger.Drop);
            migrationBuilder.Sql("ALTER TABLE activities DROP COLUMN IF EXISTS xid;");
        }
    }
}
