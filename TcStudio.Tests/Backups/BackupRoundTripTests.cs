using System.Diagnostics;
using System.Security.Cryptography;
using Npgsql;
using TcStudio.MigrationWorker.Backups;
using TcStudio.Tests.SystemDatabase;

namespace TcStudio.Tests.Backups;

/// <summary>
/// backup → manifest → backup verify → restore, as the worker process, on a system database with data in every
/// table; what restore refuses; the checksum's published definition; a backup taken while writers run.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // file modes of the backups
public sealed class BackupRoundTripTests(BackupFixture database) : IClassFixture<BackupFixture>
{
    private static readonly string[] Tables =
    [
        "public.activities", "public.database_size_samples", "public.idempotency_keys", "public.login_failures", "public.migrations",
        "public.roles", "public.stored_procedures", "public.users", "public.workspace_databases", "public.workspace_environments",
        "public.workspace_members", "public.workspaces",
        // The provisioning registry (workspaces bootstrap) lives in the system database when the local server is its server.
        "tcstudio_provisioning.workspace_roles",
    ];

    [Fact]
    public async Task Backup_writes_a_private_dump_and_a_manifest_that_restores_and_verifies_to_the_same_rows()
    {
        using var directory = BackupFixture.NewDirectory("roundtrip");
        var (dump, manifest, result) = await database.BackupAsync(directory.Path);

        Assert.Matches($@"(?m)^backup: {database.DatabaseName} [\d.]+ [kMG]?B in [\d.]+ s → {database.DatabaseName}-\d{{8}}T\d{{6}}Z\.dump "
            + $@"\([\d.]+ [kMG]?B, {Tables.Length} tables, [\d,]+ rows\); 1 kept, 0 removed\r?$", result.StandardOutput);
        Assert.Contains("    public.stored_procedures: 150 rows, checksum ", result.StandardOutput); // progress per table
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dump));
        Assert.Empty(Directory.GetFiles(directory.Path, "*.partial", SearchOption.AllDirectories));

        // The manifest: what, when, from where, and per table what the dump holds.
        Assert.Equal(("system", database.DatabaseName, "postgres"), (manifest.Kind, manifest.Database, manifest.Role));
        Assert.StartsWith("15.", manifest.ServerVersion);
        Assert.Equal(await database.ScalarAsync<string>("SELECT max(migration_id) FROM migrations"), manifest.SchemaVersion);
        Assert.Equal(new FileInfo(dump).Length, manifest.SizeBytes);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(dump))), manifest.Sha256);
        Assert.Equal(Path.GetFileName(dump), manifest.File);
        Assert.Equal(Tables, manifest.Tables.Select(t => t.Table));
        foreach (var table in manifest.Tables)
        {
            Assert.True(table.Rows > 0, $"{table.Table} is empty: the round trip must cover data in every table");
            Assert.Equal(await database.CountAsync(table.Table), table.Rows);
        }
        Assert.Equal(["id"], manifest.Tables.Single(t => t.Table == "public.users").OrderBy);
        Assert.Equal(["workspace_id", "user_id"], manifest.Tables.Single(t => t.Table == "public.workspace_members").OrderBy);

        var verify = await database.WorkerAsync(directory.Path, "backup", "verify", dump);
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Contains("SHA-256 matches the manifest", verify.StandardOutput);
        Assert.Matches($@"(?m)^backup verify: {Path.GetFileName(dump)} is good: {Tables.Length} tables, [\d,]+ rows match the manifest",
            verify.StandardOutput);
        await database.AssertScratchDatabaseGoneAsync(verify);

        var restoredName = database.DatabaseName + "_copy";
        try
        {
            var restore = await database.WorkerAsync(directory.Path, "restore", "--from", dump, "--into", restoredName);
            Assert.True(restore.ExitCode == 0, restore.ToString());
            Assert.Contains("    public.activities: 400 rows, matches", restore.StandardOutput);
            Assert.Matches($@"(?m)^restore: {Path.GetFileName(dump)} → {restoredName} in [\d.]+ s; "
                + $@"{Tables.Length} tables, [\d,]+ rows match the manifest\.",
                restore.StandardOutput);
            foreach (var table in Tables) Assert.Equal(await database.CountAsync(table), await database.CountAsync(table, restoredName));
            Assert.Equal(
                await database.ScalarAsync<string>("SELECT string_agg(name || sql_draft, '|' ORDER BY name) FROM stored_procedures"),
                await database.Server.ScalarInAsync<string>(restoredName,
                    "SELECT string_agg(name || sql_draft, '|' ORDER BY name) FROM stored_procedures"));

            // Never over an existing database...
            var again = await database.WorkerAsync(directory.Path, "restore", "--from", dump, "--into", restoredName);
            Assert.Equal(2, again.ExitCode);
            Assert.Contains($"database {restoredName} already exists; restore only creates new databases", again.StandardError);
            var live = await database.WorkerAsync(directory.Path, "restore", "--from", dump, "--into", database.DatabaseName);
            Assert.Equal(2, live.ExitCode);
            Assert.Contains("(it is the live database)", live.StandardError);
            var production = await database.WorkerAsync(database.WorkerEnvironment(directory.Path, "Production"),
                "restore", "--from", dump, "--into", restoredName, "--force");
            Assert.Equal(2, production.ExitCode);
            Assert.Contains("--force replaces an existing database only in the Development environment", production.StandardError);

            // ...unless --force in Development: the checked copy replaces it.
            await database.Server.ExecuteInAsync(restoredName, "DELETE FROM activities; DELETE FROM database_size_samples");
            var forced = await database.WorkerAsync(directory.Path, "restore", "--from", dump, "--into", restoredName, "--force");
            Assert.True(forced.ExitCode == 0, forced.ToString());
            Assert.Contains($"replaced {restoredName} with the checked copy", forced.StandardOutput);
            Assert.Equal(400, await database.CountAsync("activities", restoredName));
            await database.AssertScratchDatabaseGoneAsync(forced); // renamed into place
        }
        finally
        {
            await database.Server.DropDatabaseAsync(restoredName);
        }
    }

    [Fact]
    public async Task The_checksum_is_what_the_README_says_anyone_can_recompute_with_psql()
    {
        using var directory = BackupFixture.NewDirectory("checksum");
        var (_, manifest, _) = await database.BackupAsync(directory.Path);
        foreach (var (table, orderBy) in new[] { ("public.stored_procedures", "id"), ("public.workspace_members", "workspace_id, user_id") })
        {
            // The README's recipe, run by psql: the settings, then COPY ... TO STDOUT, hashed with sha256.
            var psql = Process.Start(new ProcessStartInfo(Path.Combine(PostgresTools.FindBinDirectory()!, "psql"))
            {
                ArgumentList =
                {
                    "-X", "-q", "-d", new NpgsqlConnectionStringBuilder(database.ConnectionString).ToLibpq(),
                    "-c", "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
                        + "SET extra_float_digits = 1; SET bytea_output = 'hex';",
                    "-c", $"COPY (SELECT * FROM ONLY {table} AS t ORDER BY {orderBy}) TO STDOUT",
                },
                RedirectStandardOutput = true,
                Environment = { ["PGPASSWORD"] = new NpgsqlConnectionStringBuilder(database.ConnectionString).Password },
            })!;
            using var bytes = new MemoryStream();
            await psql.StandardOutput.BaseStream.CopyToAsync(bytes);
            await psql.WaitForExitAsync();
            Assert.Equal(0, psql.ExitCode);
            var recorded = manifest.Tables.Single(t => t.Table == table);
            Assert.Equal(recorded.Checksum, Convert.ToHexStringLower(SHA256.HashData(bytes.ToArray())));
            Assert.Equal(recorded.Rows, bytes.ToArray().Count(b => b == (byte)'\n'));
        }
    }

    [Fact]
    public async Task A_backup_taken_while_writers_run_restores_to_exactly_the_counts_in_its_manifest()
    {
        using var directory = BackupFixture.NewDirectory("writers");
        var workspace = await database.ScalarAsync<Guid>("SELECT id FROM workspaces WHERE slug = 'twsbp'");
        using var stop = new CancellationTokenSource();
        var written = 0;
        var writers = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            await using var connection = await database.OpenConnectionAsync();
            while (!stop.IsCancellationRequested)
            {
                // Each row its own transaction, and a procedure with its activity in one: a torn snapshot would show.
                await using var batch = new NpgsqlBatch(connection)
                {
                    BatchCommands =
                    {
                        new NpgsqlBatchCommand("""
                            WITH p AS (
                                INSERT INTO stored_procedures (id, workspace_id, name, sql_draft, created_by, created_at, updated_at)
                                SELECT gen_random_uuid(), @w, 'w_' || replace(gen_random_uuid()::text, '-', ''), 'SELECT 1', id, now(), now()
                                  FROM users WHERE username = 'admin'
                                RETURNING id, created_by)
                            INSERT INTO activities (id, workspace_id, user_id, action, entity_type, entity_id, created_at)
                            SELECT gen_random_uuid(), @w, created_by, 'procedure.created', 'procedure', id, now() FROM p
                            """) { Parameters = { new("w", workspace) } },
                    },
                };
                await batch.ExecuteNonQueryAsync();
                Interlocked.Increment(ref written);
            }
        })).ToList();
        try
        {
            while (Volatile.Read(ref written) < 20) await Task.Delay(20); // the writers are under way
            var activitiesBefore = await database.CountAsync("activities");
            var (dump, manifest, _) = await database.BackupAsync(directory.Path);
            var activitiesAfter = await database.CountAsync("activities");
            await stop.CancelAsync();
            await Task.WhenAll(writers);

            var inManifest = manifest.Tables.Single(t => t.Table == "public.activities").Rows;
            Assert.InRange(inManifest, activitiesBefore + 1, activitiesAfter - 1); // taken mid-write
            Assert.Equal(inManifest - 400, manifest.Tables.Single(t => t.Table == "public.stored_procedures").Rows - 150);

            var verify = await database.WorkerAsync(directory.Path, "backup", "verify", dump);
            Assert.True(verify.ExitCode == 0, verify.ToString());
            Assert.Contains($"    public.activities: {inManifest:#,0} rows, matches", verify.StandardOutput);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(writers);
            await database.ExecuteAsync("DELETE FROM activities WHERE entity_id IN (SELECT id FROM stored_procedures WHERE name LIKE 'w\\_%'); "
                + "DELETE FROM stored_procedures WHERE name LIKE 'w\\_%'");
        }
    }
}

internal static class LibpqExtensions
{
    public static string ToLibpq(this NpgsqlConnectionStringBuilder builder) =>
        $"host={builder.Host} port={builder.Port} dbname={builder.Database} user={builder.Username}";
}
