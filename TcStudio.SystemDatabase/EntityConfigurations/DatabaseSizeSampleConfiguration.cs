using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase.EntityConfigurations;

internal sealed class DatabaseSizeSampleConfiguration : IEntityTypeConfiguration<DatabaseSizeSample>
{
    public void Configure(EntityTypeBuilder<DatabaseSizeSample> sample)
    {
        sample.ToTable("database_size_samples", t =>
        {
            t.HasCheckConstraint("ck_database_size_samples_bytes_non_negative", "database_bytes >= 0");
            t.HasCheckConstraint("ck_database_size_samples_largest_tables_array",
                "largest_tables IS NULL OR jsonb_typeof(largest_tables) = 'array'");
        });
        sample.HasKey(s => s.Id).HasName("pk_database_size_samples");
        sample.Property(s => s.LargestTables).HasColumnType("jsonb");
        sample.HasIndex(s => s.SampledAt).HasDatabaseName("ix_database_size_samples_sampled_at");
    }
}
