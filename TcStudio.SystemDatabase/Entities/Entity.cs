namespace TcStudio.SystemDatabase.Entities;

/// <summary>Rows whose created_at is stamped by <see cref="AuditTimestampsInterceptor"/> on insert.</summary>
public interface IHasCreatedAt
{
    DateTimeOffset CreatedAt { get; set; }
}

/// <summary>Rows whose created_at / updated_at are stamped by <see cref="AuditTimestampsInterceptor"/>.</summary>
public interface IAuditedEntity : IHasCreatedAt
{
    DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>Rows hidden by a global query filter once deleted_at is set.</summary>
public interface ISoftDeletable
{
    DateTimeOffset? DeletedAt { get; set; }
}
