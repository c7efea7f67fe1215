using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
{
    /// <summary>
    /// Row-level security on every workspace-scoped table (ENABLE and FORCE, see <see cref="RowLevelSecurityPolicies"/>).
    /// Catalog changes only: no table is rewritten or scanned.
    /// </summary>
    public partial class RowLevelSecurity : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder) => migrationBuilder.Sql(RowLevelSecurityPolicies.Create);

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) => migrationBuilder.Sql(RowLevelSecurityPolicies.Drop);
    }
}
