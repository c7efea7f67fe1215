using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <summary>
    /// workspace_databases: TC Studio's claims on workspace databases (server identity, database, workspace,
    /// environment, attached|detached, the environment's roles and their encrypted passwords). Environments made
    /// before it have no claim until `workspaces migrate` converts them.
    /// </summary>
    public partial class WorkspaceDatabaseOwnership : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "workspace_databases",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    server_identity = table.Column<string>(type: "character varying(300)", maxLength: 300, nullable: false),
                    server = table.Column<string>(type: "character varying(63)", maxLength: 63, nullable: false),
                    provider = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    database_name = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    workspace_id = table.Column<Guid>(type: "uuid", nullable: false),
                    environment_id = table.Column<Guid>(type: "uuid", nullable: true),
                    state = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    origin = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    owner_role = table.Column<string>(type: "character varying(63)", maxLength: 63, nullable: true),
                    execute_role = table.Column<string>(type: "character varying(63)", maxLength: 63, nullable: true),
                    owner_secret = table.Column<byte[]>(type: "bytea", nullable: true),
                    execute_secret = table.Column<byte[]>(type: "bytea", nullable: true),
                    detached_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_workspace_databases", x => x.id);
                    table.CheckConstraint("ck_workspace_databases_attached_environment", "(state = 'attached') = (environment_id IS NOT NULL)");
                    table.CheckConstraint("ck_workspace_databases_database_name_format", "database_name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'");
                    table.CheckConstraint("ck_workspace_databases_origin", "origin IN ('created', 'adopted')");
                    table.CheckConstraint("ck_workspace_databases_provider", "provider IN ('sqlserver', 'postgres')");
                    table.CheckConstraint("ck_workspace_databases_role_format", "(owner_role IS NULL OR owner_role ~ '^tcws_[a-z0-9_]+_owner$') AND (execute_role IS NULL OR execute_role ~ '^tcws_[a-z0-9_]+_exec$')");
                    table.CheckConstraint("ck_workspace_databases_state", "state IN ('attached', 'detached')");
                    table.ForeignKey(
                        name: "fk_workspace_databases_workspace_environments",
                        column: x => x.environment_id,
                        principalTable: "workspace_environments",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateIndex(
                name: "ix_workspace_databases_workspace_id",
                table: "workspace_databases",
                column: "workspace_id");

            migrationBuilder.CreateIndex(
                name: "ux_workspace_databases_environment_id",
                table: "workspace_databases",
                column: "environment_id",
                unique: true);

            // The claim itself: one row per database of a physical server, whatever its state (attached or detached).
            // Inserting it is the ownership check, so two environments can never hold one database, even racing.
            // A new, empty table: built in place.
            migrationBuilder.Sql(
                "CREATE UNIQUE INDEX ux_workspace_databases_server_identity_database_name ON workspace_databases (server_identity, lower(database_name));");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "workspace_databases");
        }
    }
}
