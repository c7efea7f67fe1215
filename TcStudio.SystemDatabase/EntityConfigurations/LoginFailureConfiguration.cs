using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class LoginFailureConfiguration : IEntityTypeConfiguration<LoginFailure>
{
    public void Configure(EntityTypeBuilder<LoginFailure> failure)
    {
        failure.ToTable("login_failures", t =>
        {
            t.HasCheckConstraint("ck_login_failures_key",
                $"key LIKE '{LoginFailure.UsernamePrefix}%' OR key LIKE '{LoginFailure.AddressPrefix}%'");
            t.HasCheckConstraint("ck_login_failures_failures_non_negative", "failures >= 0");
            t.HasCheckConstraint("ck_login_failures_pending_non_negative", "pending >= 0");
        });
        // A natural key: the upsert that counts an attempt is keyed by it, and nothing refers to these rows.
        failure.HasKey(f => f.Key).HasName("pk_login_failures");
        failure.Property(f => f.Key).HasMaxLength(LoginFailure.KeyMaxLength);
        failure.HasIndex(f => f.ExpiresAt).HasDatabaseName("ix_login_failures_expires_at");
    }
}
