using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class IdempotencyKeyConfiguration : IEntityTypeConfiguration<IdempotencyKey>
{
    public void Configure(EntityTypeBuilder<IdempotencyKey> key)
    {
        key.ToTable("idempotency_keys", t =>
        {
            t.HasCheckConstraint("ck_idempotency_keys_status_code", "status_code BETWEEN 200 AND 299");
            t.HasCheckConstraint("ck_idempotency_keys_request_hash_length", "octet_length(request_hash) = 32");
            t.HasCheckConstraint("ck_idempotency_keys_expires_after_creation", "expires_at > created_at");
        });
        // Keys are per user: two users may pick the same key without seeing each other's responses.
        key.HasKey(k => new { k.UserId, k.Key }).HasName("pk_idempotency_keys");
        key.Property(k => k.Key).HasMaxLength(IdempotencyKey.KeyMaxLength);
        key.Property(k => k.Method).HasMaxLength(16);
        key.Property(k => k.Path).HasMaxLength(IdempotencyKey.PathMaxLength);
        key.Property(k => k.ContentType).HasMaxLength(256);
        key.Property(k => k.Location).HasMaxLength(IdempotencyKey.PathMaxLength);
        key.Property(k => k.ETag).HasMaxLength(256).HasColumnName("etag");
        key.HasOne<User>().WithMany().HasForeignKey(k => k.UserId)
            .OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_idempotency_keys_users");
        // The cleanup deletes by expiry.
        key.HasIndex(k => k.ExpiresAt).HasDatabaseName("ix_idempotency_keys_expires_at");
    }
}
