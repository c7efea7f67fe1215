namespace TcStudio.SystemDatabase.Entities;

public sealed class WorkspaceEnvironment : IAuditedEntity
{
    public const int NameMaxLength = 63;
    public const int ServerMaxLength = 63;
    public const int DatabaseNameMaxLength = 128;
    public const int LastErrorMaxLength = 4000;

    public Guid Id { get; init; } = Guid.CreateVersion7();
    public Guid WorkspaceId { get; set; }
    public required string Name { get; set; }
    public required string Provider { get; set; }
    public required string Server { get; set; }
    public required string DatabaseName { get; set; }
    public int SchemaVersion { get; set; }
    public string Status { get; set; } = EnvironmentStatus.Pending;
    public string? LastError { get; set; }

    /// <summary>Executing here needs the production right (workspace Admin and above); set by those who manage environments.</summary>
    public bool IsProduction { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    public Workspace? Workspace { get; set; }
}

public static class WorkspaceProviders
{
    public const string SqlServer = "sqlserver";
    public const string Postgres = "postgres";
    public static readonly string[] All = [SqlServer, Postgres];
}

public static class EnvironmentStatus
{
    public const string Pending = "pending";
    public const string Ready = "ready";
    public const string Migrating = "migrating";
    public const string Failed = "failed";
    public const string Unreachable = "unreachable";
    public static readonly string[] All = [Pending, Ready, Migrating, Failed, Unreachable];
}
