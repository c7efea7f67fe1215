using Microsoft.EntityFrameworkCore;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Keeps an environment's row in the system database (schema_version, status, last_error) in step with what was
/// last learned about its database, by the API (create, migrate, status) and the worker alike.
/// </summary>
public static class WorkspaceEnvironmentState
{
    public static Task RecordAsync(TcStudioDbContext db, Guid environmentId, int? schemaVersion, string status, string? lastError,
        TimeProvider clock, CancellationToken cancellationToken)
    {
        var error = lastError is { Length: > WorkspaceEnvironment.LastErrorMaxLength } ? lastError[..WorkspaceEnvironment.LastErrorMaxLength]
            : lastError;
        var now = clock.GetUtcNow();
        return db.WorkspaceEnvironments.Where(e => e.Id == environmentId).ExecuteUpdateAsync(set => set
            .SetProperty(e => e.SchemaVersion, e => schemaVersion ?? e.SchemaVersion)
            .SetProperty(e => e.Status, status)
            .SetProperty(e => e.LastError, error)
            .SetProperty(e => e.UpdatedAt, now), cancellationToken);
    }

    /// <summary>The row's status for a schema status: current → ready, behind → pending, ahead/tampered → failed.</summary>
    public static (string Status, string? Error) From(WorkspaceSchemaStatus schema) => schema.State switch
    {
        WorkspaceSchemaState.Current => (EnvironmentStatus.Ready, null),
        WorkspaceSchemaState.Behind => (EnvironmentStatus.Pending, schema.Problem),
        _ => (EnvironmentStatus.Failed, schema.Problem),
    };

    /// <summary>The row's status for a failure: unreachable, or failed with the reason.</summary>
    public static (string Status, string Error) From(Exception failure) => failure switch
    {
        WorkspaceDatabaseUnavailableException e => (EnvironmentStatus.Unreachable, e.Message),
        WorkspaceDatabaseException e => (EnvironmentStatus.Failed, e.Message),
        _ => (EnvironmentStatus.Failed, failure.Message),
    };
}
