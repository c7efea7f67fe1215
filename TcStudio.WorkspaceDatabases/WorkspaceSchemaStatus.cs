namespace TcStudio.WorkspaceDatabases;

public enum WorkspaceSchemaState
{
    Current,
    /// <summary>Migrations pending: status says so and publishing refuses until migrated.</summary>
    Behind,
    /// <summary>Migrated by a newer build: refused.</summary>
    Ahead,
    /// <summary>An applied migration's recorded checksum differs from the script: refused.</summary>
    ChecksumMismatch,
}

/// <summary>A workspace database's base schema compared with this build's migrations.</summary>
public sealed record WorkspaceSchemaStatus(WorkspaceSchemaState State, int Version, int ExpectedVersion, IReadOnlyList<string> Pending,
    string? Problem)
{
    public string StateName => State switch
    {
        WorkspaceSchemaState.Current => "current",
        WorkspaceSchemaState.Behind => "behind",
        WorkspaceSchemaState.Ahead => "ahead",
        _ => "checksum_mismatch",
    };

    public static WorkspaceSchemaStatus Evaluate(IReadOnlyList<AppliedWorkspaceMigration> applied, IReadOnlyList<WorkspaceMigration> known)
    {
        var version = applied.Count == 0 ? 0 : applied.Max(a => a.Version);
        if (version > known.Count)
        {
            return new(WorkspaceSchemaState.Ahead, version, known.Count, [],
                $"The database's base schema is at version {version}, newer than this build knows ({known.Count}); refusing to use it.");
        }
        foreach (var migration in applied)
        {
            var expected = known[migration.Version - 1];
            if (!string.Equals(expected.Checksum, migration.Checksum, StringComparison.OrdinalIgnoreCase))
            {
                return new(WorkspaceSchemaState.ChecksumMismatch, version, known.Count, [],
                    $"Migration {expected.Id} was changed after it was applied (checksum mismatch); refusing to use the database.");
            }
        }
        if (applied.Count != version)
        {
            return new(WorkspaceSchemaState.ChecksumMismatch, version, known.Count, [],
                $"The schema history has gaps ({applied.Count} rows up to version {version}); refusing to use the database.");
        }
        var pending = known.Skip(version).Select(m => m.Id).ToList();
        return pending.Count > 0
            ? new(WorkspaceSchemaState.Behind, version, known.Count, pending,
                $"{pending.Count} base-schema migration(s) pending; migrate the environment.")
            : new(WorkspaceSchemaState.Current, version, known.Count, [], null);
    }
}
