using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class UserConfiguration : IEntityTypeConfiguration<User>
{
    public void Configure(EntityTypeBuilder<User> user)
    {
        user.ToTable("users", t =>
        {
            t.HasCheckConstraint("ck_users_username_format", "username ~ '^[A-Za-z0-9._-]{3,64}$'");
            t.HasCheckConstraint("ck_users_email_format", "email IS NULL OR email ~ '^[^@[:space:]]+@[^@[:space:]]+$'");
        });
        user.HasKey(u => u.Id).HasName("pk_users");
        user.Property(u => u.Username).HasMaxLength(User.UsernameMaxLength);
        user.Property(u => u.Email).HasMaxLength(User.EmailMaxLength);
        user.Property(u => u.DisplayName).HasMaxLength(User.DisplayNameMaxLength);
        user.Property(u => u.PasswordHash).HasMaxLength(512);
        user.Property(u => u.IsActive).HasDefaultValue(true);
        user.Property(u => u.Version).IsRowVersion();

        // Case-insensitive uniqueness (ux_users_username, ux_users_email on lower(...)) is created in the
        // migration as expression indexes; it covers soft-deleted rows so their names stay reserved.
        user.HasOne(u => u.Role).WithMany().HasForeignKey(u => u.RoleId)
            .OnDelete(DeleteBehavior.Restrict).HasConstraintName("fk_users_roles");
        user.HasIndex(u => u.RoleId).HasDatabaseName("ix_users_role_id");

        user.HasQueryFilter(u => u.DeletedAt == null);
    }
}
