using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <summary>
    /// Full-text search per workspace: a GIN index on (workspace_id, search_vector) replaces the table-wide one, so a
    /// search costs what the workspace holds, not what every workspace holds. Built and dropped CONCURRENTLY (outside
    /// a transaction) so a table full of procedures keeps taking writes; the new index exists before the old one goes.
    /// </summary>
    public partial class ProcedureSearchByWorkspace : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("CREATE EXTENSION IF NOT EXISTS btree_gin;");
            // A CREATE INDEX CONCURRENTLY that failed part-way leaves an invalid index behind: drop it so a re-run works.
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_stored_procedures_workspace_id_search_vector;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY ix_stored_procedures_workspace_id_search_vector ON stored_procedures USING gin (workspace_id, search_vector);",
                suppressTransaction: true);
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_stored_procedures_search_vector;", suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_stored_procedures_search_vector;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY ix_stored_procedures_search_vector ON stored_procedures USING gin (search_vector);",
                suppressTransaction: true);
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_stored_procedures_workspace_id_search_vector;", suppressTransaction: true);
            migrationBuilder.Sql("DROP EXTENSION IF EXISTS btree_gin;");
        }
    }
}
