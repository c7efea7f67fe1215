using System.Text.Json.Nodes;
using TcStudio.MigrationWorker.Backups;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Backups;

/// <summary>
/// A system database with data in every table (the worker's default run seeds it and creates the twsbp/dev
/// workspace database; procedures, activity and size samples are added), and helpers to run the backup verbs as the
/// worker process with a backup directory of the test's own.
/// </summary>
public class BackupFixture(PostgresServer server) : SystemDatabaseFixture(server)
{
    public string DevDatabase => MigrationWorkerRunner.DevDatabaseName(ConnectionString)!;

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        var seeded = await MigrationWorkerRunner.RunAsync(ConnectionString);
        Assert.True(seeded.ExitCode == 0, seeded.ToString());
        await ExecuteAsync("""
            INSERT INTO stored_procedures (id, workspace_id, name, status, sql_draft, created_by, created_at, updated_at)
            SELECT gen_random_uuid(), w.id, 'proc_' || g, 'draft',
                   'SELECT ' || g || ' -- ünïcødé ''quoted'' back\slash' || chr(10) || E'\ttab', u.id,
                   timestamptz '2026-11-01 12:00:00+01' + g * interval '1 minute 0.123456 s', now()
              FROM workspaces w, users u, generate_series(1, 150) g
             WHERE w.slug = 'twsbp' AND u.username = 'admin';
            INSERT INTO activities (id, workspace_id, user_id, action, entity_type, entity_id, details, created_at)
            SELECT gen_random_uuid(), w.id, u.id, 'procedure.created', 'procedure', gen_random_uuid(),
                   jsonb_build_object('n', g, 'ratio', g / 7.0, 'note', 'line' || chr(10) || 'break'), now() - g * interval '1 second'
              FROM workspaces w, users u, generate_series(1, 400) g
             WHERE w.slug = 'twsbp' AND u.username = 'user';
            INSERT INTO database_size_samples (id, sampled_at, database_bytes, largest_tables)
            SELECT gen_random_uuid(), now() - g * interval '15 minutes', 8000000 + g, '[{"table": "activities", "bytes": 1}]'::jsonb
              FROM generate_series(1, 5) g;
            INSERT INTO idempotency_keys (user_id, key, request_hash, method, path, status_code, response_body, created_at, expires_at)
            SELECT u.id, 'key-' || g, sha256(('request ' || g)::bytea), 'POST', '/api/workspaces', 201, convert_to('{"n": ' || g || '}', 'UTF8'),
                   now(), now() + interval '1 day'
              FROM users u, generate_series(1, 3) g
             WHERE u.username = 'user';
            INSERT INTO login_failures (key, failures, pending, last_failure_at, expires_at)
            VALUES ('username:someone', 2, 0, now(), now() + interval '15 minutes'),
                   ('address:192.0.2.7', 1, 0, now(), now() + interval '15 minutes');
            """);
    }

    public override async ValueTask DisposeAsync()
    {
        await Server.DropDatabaseAsync(DevDatabase);
        await base.DisposeAsync();
    }

    /// <summary>A fresh backup directory under the temporary directory, deleted by the test's using.</summary>
    public static TemporaryDirectory NewDirectory(string purpose) => new(purpose);

    public Dictionary<string, string?> WorkerEnvironment(string backupDirectory, string environment = "Development")
    {
        var variables = MigrationWorkerRunner.Environment(ConnectionString, environment);
        variables["Backup__Directory"] = backupDirectory;
        variables["Logging__LogLevel__Default"] = "Warning";
        return variables;
    }

    public Task<ProcessResult> WorkerAsync(string backupDirectory, params string[] arguments) =>
        MigrationWorkerRunner.RunAsync(WorkerEnvironment(backupDirectory), arguments);

    public Task<ProcessResult> WorkerAsync(IDictionary<string, string?> environment, params string[] arguments) =>
        MigrationWorkerRunner.RunAsync(environment, arguments);

    /// <summary>Runs `backup` and returns the dump it wrote (the only one in the directory).</summary>
    public async Task<(string Dump, BackupManifest Manifest, ProcessResult Result)> BackupAsync(string backupDirectory)
    {
        var result = await WorkerAsync(backupDirectory, "backup");
        Assert.True(result.ExitCode == 0, result.ToString());
        var dump = Directory.GetFiles(backupDirectory, "*.dump").OrderBy(f => f, StringComparer.Ordinal).Last();
        return (dump, await BackupManifest.ReadAsync(dump, CancellationToken.None), result);
    }

    public async Task<long> CountAsync(string table, string? database = null)
    {
        // Unpooled: a restore --force drops and replaces databases, which would leave pooled connections dead.
        await using var connection = new Npgsql.NpgsqlConnection(Server.ConnectionString(database ?? DatabaseName, pooling: false));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM {table}", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public async Task<List<string>> DatabasesLikeAsync(string prefix)
    {
        await using var connection = new Npgsql.NpgsqlConnection(Server.ConnectionString("postgres"));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("SELECT datname FROM pg_database WHERE datname LIKE @p ORDER BY 1", connection);
        command.Parameters.AddWithValue("p", prefix + "%");
        await using var reader = await command.ExecuteReaderAsync();
        var names = new List<string>();
        while (await reader.ReadAsync()) names.Add(reader.GetString(0));
        return names;
    }

    /// <summary>The scratch database a verify or a forced restore named in its output: gone afterwards (tests run in parallel, so by name).</summary>
    public async Task AssertScratchDatabaseGoneAsync(ProcessResult result)
    {
        var match = System.Text.RegularExpressions.Regex.Match(result.StandardOutput,
            @"restoring into (?:the scratch database )?(tcstudio_(?:verify|incoming)_[0-9a-f]+)");
        Assert.True(match.Success, result.ToString());
        Assert.Empty(await DatabasesLikeAsync(match.Groups[1].Value));
    }

    /// <summary>Rewrites a manifest's JSON (tests of what restore does when the database and the manifest disagree).</summary>
    public static void EditManifest(string dump, Action<JsonObject> edit)
    {
        var path = BackupManifest.PathFor(dump);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }
}

public sealed class TemporaryDirectory : IDisposable
{
    public TemporaryDirectory(string purpose)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tcstudio-tests", $"{purpose}-{Guid.NewGuid():N}"[..(purpose.Length + 9)]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public override string ToString() => Path;

    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}
