using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TcStudio.MigrationWorker.Backups;

/// <summary>One table's row count and content checksum (see <see cref="TableChecksums"/> for the definition).</summary>
public sealed record TableContent(string Table, long Rows, string Checksum, IReadOnlyList<string> OrderBy);

/// <summary>
/// What a backup holds, written beside its file as <c>&lt;file&gt;.manifest.json</c>: when and from what it was taken,
/// the file's size and SHA-256, and every table's row count and content checksum as of the same snapshot the dump
/// read. Restore and verify check the file against it first, and the restored database against it afterwards.
/// </summary>
public sealed record BackupManifest
{
    public const string CurrentFormat = "tcstudio-backup/1";
    public const string Suffix = ".manifest.json";

    public string Format { get; init; } = CurrentFormat;

    /// <summary><c>system</c> (the system database), <c>workspace</c> (a workspace database on PostgreSQL) or <c>sqlserver</c>.</summary>
    public required string Kind { get; init; }

    public required string Database { get; init; }

    /// <summary>host:port of the server it came from (never credentials).</summary>
    public required string Server { get; init; }

    /// <summary>For workspace databases: the registered server's name, and which workspace environment it is.</summary>
    public string? WorkspaceServer { get; init; }
    public string? Workspace { get; init; }
    public string? Environment { get; init; }

    public required DateTimeOffset StartedAt { get; init; }
    public required DateTimeOffset FinishedAt { get; init; }

    /// <summary>The server's clock when the snapshot was taken: the backup shows the database as of this moment.</summary>
    public DateTimeOffset? SnapshotAt { get; init; }

    public required string ServerVersion { get; init; }
    public string? DumpToolVersion { get; init; }

    /// <summary>The last applied migration (system database) or the base-schema version (workspace database).</summary>
    public string? SchemaVersion { get; init; }

    /// <summary>The role the backup read as (it needs no more than read rights).</summary>
    public string? Role { get; init; }

    public string? Encoding { get; init; }
    public string? Collate { get; init; }
    public string? Ctype { get; init; }

    /// <summary>The backup file's name (beside this manifest), or for SQL Server its path on the SQL Server host.</summary>
    public required string File { get; init; }

    public required long SizeBytes { get; init; }
    public string? Sha256 { get; init; }
    public string? Compression { get; init; }

    /// <summary>How each table's checksum is computed (so anyone can recompute it by hand).</summary>
    public string? ChecksumDefinition { get; init; }

    public IReadOnlyList<TableContent> Tables { get; init; } = [];

    [JsonIgnore]
    public long TotalRows => Tables.Sum(t => t.Rows);

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static string PathFor(string backupFile) => backupFile + Suffix;

    /// <summary>Writes the manifest next to <paramref name="backupFile"/>: to a temporary name first, then renamed.</summary>
    public async Task WriteAsync(string backupFile, CancellationToken cancellationToken)
    {
        var path = PathFor(backupFile);
        var temporary = path + ".partial";
        await System.IO.File.WriteAllTextAsync(temporary, JsonSerializer.Serialize(this, JsonOptions) + "\n", cancellationToken);
        PostgresTools.MakePrivate(temporary);
        System.IO.File.Move(temporary, path, overwrite: true);
    }

    public static async Task<BackupManifest> ReadAsync(string backupFile, CancellationToken cancellationToken)
    {
        var path = PathFor(backupFile);
        if (!System.IO.File.Exists(path))
        {
            throw new BackupException($"{Path.GetFileName(backupFile)} has no manifest beside it (expected {path}); "
                + "a backup without its manifest cannot be checked.");
        }
        try
        {
            var manifest = JsonSerializer.Deserialize<BackupManifest>(await System.IO.File.ReadAllTextAsync(path, cancellationToken), JsonOptions);
            if (manifest?.Format != CurrentFormat) throw new JsonException($"unknown format '{manifest?.Format}'");
            return manifest;
        }
        catch (JsonException e)
        {
            throw new BackupException($"The manifest {path} cannot be read ({e.Message.ReplaceLineEndings(" ")}).");
        }
    }

    /// <summary>The manifests in a directory (not below it), skipping any that cannot be read.</summary>
    public static IReadOnlyList<(string File, BackupManifest Manifest)> List(string directory)
    {
        if (!Directory.Exists(directory)) return [];
        var found = new List<(string, BackupManifest)>();
        foreach (var path in Directory.GetFiles(directory, "*" + Suffix))
        {
            try
            {
                var manifest = JsonSerializer.Deserialize<BackupManifest>(System.IO.File.ReadAllText(path), JsonOptions);
                if (manifest?.Format == CurrentFormat) found.Add((path[..^Suffix.Length], manifest));
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                // Not ours, or damaged: retention leaves it alone, restore reports it when asked for it.
            }
        }
        return found;
    }

    public static async Task<string> Sha256Async(string file, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken));
    }
}
