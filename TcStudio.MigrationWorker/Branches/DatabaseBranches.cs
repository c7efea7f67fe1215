using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;
using TcStudio.MigrationWorker.Backups;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.MigrationWorker.Branches;

/// <summary>A branch as <c>branch list</c> shows it.</summary>
public sealed record DatabaseBranch(string Name, string Source, DateTimeOffset CreatedAt, string? Role, long SizeBytes);

/// <summary>
/// Throwaway copies of a database on the system database's server, for trying a migration and dropping it.
/// A branch is recognised by its comment, <c>tcstudio-branch of &lt;source&gt; at &lt;time&gt;[; role &lt;role&gt;]</c>:
/// <c>branch list</c> shows only such databases and <c>branch delete</c> drops nothing else.
/// <list type="bullet">
/// <item>Copying: from a source nobody is connected to, <c>CREATE DATABASE … TEMPLATE</c> (a file copy, seconds);
/// otherwise <c>pg_dump -Fc | pg_restore</c> streamed, with progress — never by ending other sessions.</item>
/// <item>A workspace database (one with <c>tcstudio_ownership.marker</c>) is always dumped and restored without owners
/// and privileges, into objects owned by a role made for the branch (NOLOGIN): the branch holds nothing that names
/// the environment's roles (which stay droppable), and its marker is rewritten to say it is a detached branch (no
/// workspace or environment: zero ids, <c>branch_of</c> the source), so no workspace can use it until a system Admin
/// adopts it. It is never inserted into <c>workspace_databases</c>.</item>
/// <item>Only TC Studio's own databases are copied: the system database, a workspace database or another branch.</item>
/// </list>
/// </summary>
public sealed partial class DatabaseBranches(NpgsqlConnectionStringBuilder system, PostgresTools tools, TextWriter output)
{
    public const string CommentPrefix = "tcstudio-branch of ";
    public const string RolePrefix = "tcbranch_";

    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    /// <summary>One line saying why a name cannot be a branch's, or null.</summary>
    public static string? FindNameError(string name) => BranchName().IsMatch(name)
        ? null
        : $"'{name}' is not a branch name: use 1–63 characters, lower-case letters, digits, '_' or '-', starting with a letter or '_'.";

    public async Task<DatabaseBranch> CreateAsync(string name, string? from, CancellationToken ct)
    {
        var source = from ?? system.Database!;
        await using var maintenance = await OpenAsync(MaintenanceDatabase, ct);
        if (await ExistsAsync(maintenance, name, ct))
        {
            throw new BranchException($"database '{name}' already exists; pick another name or delete that branch first.");
        }
        if (!await ExistsAsync(maintenance, source, ct)) throw new BranchException($"source database '{source}' does not exist on {Where}.");

        var isWorkspace = await HasMarkerAsync(source, ct);
        var isBranch = (await CommentAsync(maintenance, source, ct))?.StartsWith(CommentPrefix, StringComparison.Ordinal) == true;
        if (!isWorkspace && !isBranch && source != system.Database)
        {
            throw new BranchException($"'{source}' is not one of TC Studio's databases (the system database '{system.Database}', "
                + "a workspace database or a branch); it is not copied.");
        }

        var stopwatch = Stopwatch.StartNew();
        string? role = null;
        string method;
        if (isWorkspace)
        {
            role = RolePrefix + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();
            output.WriteLine($"branch create: '{source}' is a workspace database; copying it without its environment's roles into '{name}', "
                + $"owned by new role {role}");
            await ExecuteAsync(maintenance, $"CREATE ROLE {Quote(role)} NOLOGIN", ct);
            try
            {
                await ExecuteAsync(maintenance, $"GRANT {Quote(role)} TO CURRENT_USER", ct);
                await ExecuteAsync(maintenance, $"CREATE DATABASE {Quote(name)} OWNER {Quote(role)}", ct);
                await ExecuteAsync(maintenance, $"REVOKE CONNECT, TEMPORARY ON DATABASE {Quote(name)} FROM PUBLIC", ct);
                await CommentOnAsync(maintenance, name, source, role, ct);
                await DumpAndRestoreAsync(source, name, ["--no-owner", "--no-privileges", $"--role={role}"], ct);
                await MarkDetachedAsync(name, source, role, ct);
            }
            catch
            {
                await DropQuietlyAsync(maintenance, name, role, ct);
                throw;
            }
            method = "pg_dump | pg_restore";
        }
        else if (await OtherSessionsAsync(maintenance, source, ct) == 0 && await TryCopyTemplateAsync(maintenance, name, source, ct))
        {
            method = "CREATE DATABASE … TEMPLATE";
            await CommentOnAsync(maintenance, name, source, null, ct);
        }
        else
        {
            output.WriteLine($"branch create: '{source}' is in use; copying it with pg_dump | pg_restore (its sessions are left alone)");
            await ExecuteAsync(maintenance, $"CREATE DATABASE {Quote(name)}", ct);
            try
            {
                await CommentOnAsync(maintenance, name, source, null, ct);
                await DumpAndRestoreAsync(source, name, [], ct);
            }
            catch
            {
                await DropQuietlyAsync(maintenance, name, null, ct);
                throw;
            }
            method = "pg_dump | pg_restore";
        }

        var branch = (await ListAsync(ct)).Single(b => b.Name == name);
        output.WriteLine($"branch create: '{name}' from '{source}' by {method} in {stopwatch.Elapsed.TotalSeconds:0.0} s "
            + $"({Size(branch.SizeBytes)}).");
        return branch;
    }

    public async Task<IReadOnlyList<DatabaseBranch>> ListAsync(CancellationToken ct)
    {
        await using var maintenance = await OpenAsync(MaintenanceDatabase, ct);
        await using var command = new NpgsqlCommand("""
            SELECT datname, shobj_description(oid, 'pg_database'), pg_database_size(oid)
            FROM pg_database
            WHERE shobj_description(oid, 'pg_database') LIKE 'tcstudio-branch of %'
            ORDER BY datname
            """, maintenance);
        var branches = new List<DatabaseBranch>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            if (ParseComment(reader.GetString(1)) is { } parsed)
            {
                branches.Add(new DatabaseBranch(reader.GetString(0), parsed.Source, parsed.At, parsed.Role, reader.GetInt64(2)));
            }
        }
        return branches;
    }

    public async Task DeleteAsync(string name, CancellationToken ct)
    {
        await using var maintenance = await OpenAsync(MaintenanceDatabase, ct);
        if (!await ExistsAsync(maintenance, name, ct)) throw new BranchException($"there is no database '{name}' on {Where}.");
        if (ParseComment(await CommentAsync(maintenance, name, ct)) is not { } branch)
        {
            throw new BranchException($"'{name}' is not a branch (branch delete drops only databases branch create made).");
        }
        if (await OtherSessionsAsync(maintenance, name, ct) is var sessions and > 0)
        {
            throw new BranchException($"branch '{name}' has {sessions} open session(s); stop what is connected to it (an API pointed "
                + "at it?) and try again.");
        }
        try
        {
            await ExecuteAsync(maintenance, $"DROP DATABASE {Quote(name)}", ct);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
        {
            throw new BranchException($"branch '{name}' is in use: {e.MessageText}.");
        }
        if (branch.Role is { } role && await RoleExistsAsync(maintenance, role, ct))
        {
            await ExecuteAsync(maintenance, $"DROP ROLE {Quote(role)}", ct);
        }
        output.WriteLine($"branch delete: dropped '{name}' (a branch of "
            + $"'{branch.Source}'){(branch.Role is null ? "" : $" and its role {branch.Role}")}.");
    }

    private string MaintenanceDatabase => system.Database == "postgres" ? "template1" : "postgres";

    private string Where => $"{system.Host}:{system.Port}";

    private async Task<NpgsqlConnection> OpenAsync(string database, CancellationToken ct)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(system.ConnectionString)
        {
            Database = database,
            Pooling = false,
            ApplicationName = "tcstudio-branch",
            CommandTimeout = 0,
        }.ConnectionString);
        await connection.OpenAsync(ct);
        return connection;
    }

    private async Task<bool> TryCopyTemplateAsync(NpgsqlConnection maintenance, string name, string source, CancellationToken ct)
    {
        try
        {
            await ExecuteAsync(maintenance, $"CREATE DATABASE {Quote(name)} TEMPLATE {Quote(source)}", ct);
            return true;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
        {
            // Someone connected between the check and the copy: fall back to a dump, without disturbing them.
            return false;
        }
    }

    /// <summary>pg_dump -Fc of the source piped into pg_restore of the target, with a progress line every 2 s.</summary>
    private async Task DumpAndRestoreAsync(string source, string target, IReadOnlyList<string> restoreOptions, CancellationToken ct)
    {
        using var password = PasswordFile.For(system);
        using var dump = Start("pg_dump", ["--format=custom", "--no-password", $"--dbname={Libpq.ConnectionString(system, source)}"], password);
        using var restore = Start("pg_restore", ["--no-password", "--exit-on-error", "--single-transaction",
            $"--dbname={Libpq.ConnectionString(system, target)}", .. restoreOptions], password);
        var dumpErrors = dump.StandardError.ReadToEndAsync(ct);
        var restoreErrors = restore.StandardError.ReadToEndAsync(ct);
        var restoreOutput = restore.StandardOutput.ReadToEndAsync(ct);

        var stopwatch = Stopwatch.StartNew();
        var lastProgress = TimeSpan.Zero;
        long copied = 0;
        var buffer = new byte[81920];
        try
        {
            var from = dump.StandardOutput.BaseStream;
            var to = restore.StandardInput.BaseStream;
            int read;
            while ((read = await from.ReadAsync(buffer, ct)) > 0)
            {
                await to.WriteAsync(buffer.AsMemory(0, read), ct);
                copied += read;
                if (stopwatch.Elapsed - lastProgress >= ProgressInterval)
                {
                    lastProgress = stopwatch.Elapsed;
                    output.WriteLine($"branch create: copied {Size(copied)} of '{source}' ({stopwatch.Elapsed.TotalSeconds:0} s)");
                }
            }
            await to.FlushAsync(ct);
        }
        catch (IOException)
        {
            // pg_restore stopped reading (it failed): its own error says why, below.
        }
        finally
        {
            try
            {
                restore.StandardInput.Close();
            }
            catch (IOException)
            {
                // Already closed by a failed pg_restore.
            }
        }
        await Task.WhenAll(dump.WaitForExitAsync(ct), restore.WaitForExitAsync(ct));
        await restoreOutput;
        if (dump.ExitCode != 0) throw new BranchException($"pg_dump of '{source}' failed: {LastLine(await dumpErrors)}");
        if (restore.ExitCode != 0) throw new BranchException($"pg_restore into '{target}' failed: {LastLine(await restoreErrors)}");
        output.WriteLine($"branch create: copied {Size(copied)} of '{source}' in {stopwatch.Elapsed.TotalSeconds:0.0} s");
    }

    private Process Start(string tool, IReadOnlyList<string> arguments, PasswordFile? password)
    {
        var start = new ProcessStartInfo(tools.PathOf(tool))
        {
            RedirectStandardInput = tool == "pg_restore",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // Only what we pass decides where a tool connects: no inherited PGHOST, PGPASSWORD, PGSERVICE, ...
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("PG", StringComparison.Ordinal)).ToList()) start.Environment.Remove(key);
        start.Environment["LC_MESSAGES"] = "C";
        if (password is not null) start.Environment["PGPASSFILE"] = password.Path;
        try
        {
            return Process.Start(start) ?? throw new BranchException($"could not start {tools.PathOf(tool)}.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new BranchException($"could not run {tools.PathOf(tool)}: {e.Message}. Install the PostgreSQL client tools or "
                + "set Backup:PostgresBin.");
        }
    }

    /// <summary>The branch's own marker: no workspace, no environment, which database it was taken from.</summary>
    private async Task MarkDetachedAsync(string branch, string source, string role, CancellationToken ct)
    {
        await using var connection = await OpenAsync(branch, ct);
        await ExecuteAsync(connection, $"SET ROLE {Quote(role)}", ct);
        await using var command = new NpgsqlCommand($"""
            ALTER TABLE {WorkspaceMarker.Schema}.marker ADD COLUMN IF NOT EXISTS branch_of text;
            UPDATE {WorkspaceMarker.Schema}.marker
               SET workspace_id = '00000000-0000-0000-0000-000000000000', environment_id = '00000000-0000-0000-0000-000000000000',
                   database_id = @database_id, server_identity = 'detached branch', branch_of = @source, written_at = now();
            COMMENT ON TABLE {WorkspaceMarker.Schema}.marker
                IS 'TC Studio: a detached branch; no workspace may use it until a system Admin adopts it';
            """, connection);
        command.Parameters.AddWithValue("database_id", Guid.CreateVersion7());
        command.Parameters.AddWithValue("source", source);
        await command.ExecuteNonQueryAsync(ct);
    }

    private async Task<bool> HasMarkerAsync(string database, CancellationToken ct)
    {
        await using var connection = await OpenAsync(database, ct);
        await using var command = new NpgsqlCommand(
            $"SELECT to_regclass('{WorkspaceMarker.Schema}.marker') IS NOT NULL", connection);
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private async Task CommentOnAsync(NpgsqlConnection maintenance, string name, string source, string? role, CancellationToken ct)
    {
        var comment = $"{CommentPrefix}{source} at {DateTimeOffset.UtcNow:yyyy-MM-ddTHH:mm:ssZ}{(role is null ? "" : $"; role {role}")}";
        // COMMENT takes a literal, not a parameter: the text is built from validated names only, and quoted.
        await ExecuteAsync(maintenance, $"COMMENT ON DATABASE {Quote(name)} IS {Literal(comment)}", ct);
    }

    internal static (string Source, DateTimeOffset At, string? Role)? ParseComment(string? comment)
    {
        if (comment is null) return null;
        var match = CommentPattern().Match(comment);
        if (!match.Success) return null;
        return (match.Groups["source"].Value,
            DateTimeOffset.ParseExact(match.Groups["at"].Value, "yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal),
            match.Groups["role"].Success ? match.Groups["role"].Value : null);
    }

    private static async Task<string?> CommentAsync(NpgsqlConnection maintenance, string name, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", maintenance);
        command.Parameters.Add(new NpgsqlParameter { Value = name });
        return await command.ExecuteScalarAsync(ct) as string;
    }

    private static async Task<bool> ExistsAsync(NpgsqlConnection maintenance, string name, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", maintenance);
        command.Parameters.Add(new NpgsqlParameter { Value = name });
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task<bool> RoleExistsAsync(NpgsqlConnection maintenance, string role, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", maintenance);
        command.Parameters.Add(new NpgsqlParameter { Value = role });
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task<long> OtherSessionsAsync(NpgsqlConnection maintenance, string database, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", maintenance);
        command.Parameters.Add(new NpgsqlParameter { Value = database });
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task DropQuietlyAsync(NpgsqlConnection maintenance, string name, string? role, CancellationToken ct)
    {
        try
        {
            await ExecuteAsync(maintenance, $"DROP DATABASE IF EXISTS {Quote(name)}", ct);
            if (role is not null) await ExecuteAsync(maintenance, $"DROP ROLE IF EXISTS {Quote(role)}", ct);
        }
        catch (NpgsqlException)
        {
            // The original failure is what the user needs to see.
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    internal static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";

    private static string Literal(string text) => "'" + text.Replace("'", "''") + "'";

    private static string LastLine(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "(no message)";

    internal static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.0} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };

    [GeneratedRegex("^[a-z_][a-z0-9_-]{0,62}$")]
    private static partial Regex BranchName();

    [GeneratedRegex(@"^tcstudio-branch of (?<source>.+) at (?<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)(; role (?<role>tcbranch_[0-9a-f]+))?$")]
    private static partial Regex CommentPattern();
}

/// <summary>A branch verb cannot go on; the message is the one line it prints.</summary>
public sealed class BranchException(string message) : Exception(message);
