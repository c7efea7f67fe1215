using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <inheritdoc />
    public partial class EnvironmentProductionAndPublishedChecksum : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<bool>(
                name: "is_production",
                table: "workspace_environments",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.AddColumn<string>(
                name: "published_checksum",
                table: "stored_procedures",
                type: "character varying(128)",
                maxLength: 128,
                nullable: true);

            // Production used to be guessed from the name; existing environments keep what the guess said (a constant
            // default above, so no table rewrite; this update touches only the few environments so named).
            migrationBuilder.Sql("""
                UPDATE workspace_environments SET is_production = true
                WHERE name IN ('prod', 'production') OR name LIKE 'prod-%';
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "is_production",
                table: "workspace_environments");

            migrationBuilder.DropColumn(
                name: "published_checksum",
                table: "stored_procedures");
        }
    }
}
