using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class RoleConfiguration : IEntityTypeConfiguration<Role>
{
    public void Configure(EntityTypeBuilder<Role> role)
    {
        role.ToTable("roles", t => t.HasCheckConstraint("ck_roles_name", Sql.InList("name", Role.All)));
        role.HasKey(r => r.Id).HasName("pk_roles");
        role.Property(r => r.Name).HasMaxLength(32);
        role.Property(r => r.Description).HasMaxLength(500);
        role.HasIndex(r => r.Name).IsUnique().HasDatabaseName("ux_roles_name");
    }
}
