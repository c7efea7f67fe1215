using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Stamps created_at on insert and updated_at on insert and update, for every entity, in one place, so no
/// handler sets them by hand and none can forget.
/// </summary>
public sealed class AuditTimestampsInterceptor(TimeProvider clock) : SaveChangesInterceptor
{
    public override InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        Stamp(eventData.Context);
        return result;
    }

    public override ValueTask<InterceptionResult<int>> SavingChangesAsync(
        DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        Stamp(eventData.Context);
        return ValueTask.FromResult(result);
    }

    private void Stamp(DbContext? context)
    {
        if (context is null) return;
        // timestamptz keeps microseconds: stamping at that precision makes what a handler returns right after
        // SaveChanges equal to what a later read returns (Npgsql would truncate the extra ticks on the way in).
        var now = clock.GetUtcNow();
        now = now.AddTicks(-(now.Ticks % 10));
        foreach (var entry in context.ChangeTracker.Entries())
        {
            switch (entry.State)
            {
                case EntityState.Added:
                    if (entry.Entity is IHasCreatedAt created) created.CreatedAt = now;
                    if (entry.Entity is IAuditedEntity added) added.UpdatedAt = now;
                    break;
                case EntityState.Modified:
                    if (entry.Entity is IAuditedEntity modified)
                    {
                        modified.UpdatedAt = now;
                        // created_at never changes after insert, whatever a handler did to the entity.
                        entry.Property(nameof(IHasCreatedAt.CreatedAt)).IsModified = false;
                    }
                    break;
            }
        }
    }
}
