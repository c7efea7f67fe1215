using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.SystemDatabase.Security;

/// <summary>
/// The configuration section <c>SystemRoles</c>: the names of the system database's roles (default
/// <c>&lt;database&gt;_owner</c>, <c>_app</c>, <c>_backup</c>, <c>_definer</c>: one set per system database, since
/// several may share a cluster) and the passwords of the login roles. A password left unset leaves the role's
/// password as it is (a new role then has none and cannot sign in with one).
/// </summary>
public sealed class SystemRoleOptions
{
    public const string SectionName = "SystemRoles";

    public string? Owner { get; set; }
    public string? App { get; set; }
    public string? Backup { get; set; }
    public string? Definer { get; set; }

    /// <summary>Defaults to the password of <c>ConnectionStrings:tcstudio</c> when that string signs in as the owner.</summary>
    public string? OwnerPassword { get; set; }
    public string? AppPassword { get; set; }
    public string? BackupPassword { get; set; }

    /// <summary>The first name that is not a plain role name or repeats another, in one line naming its key; never a password.</summary>
    public static string? FindError(SystemRoleOptions options)
    {
        var named = new (string Key, string? Name)[]
        {
            (nameof(Owner), options.Owner), (nameof(App), options.App), (nameof(Backup), options.Backup), (nameof(Definer), options.Definer),
        };
        foreach (var (key, name) in named)
        {
            if (name is not null && !SystemDatabaseRoles.RoleName().IsMatch(name))
            {
                return $"{SectionName}:{key} must be a plain lower-case identifier of at most 63 characters.";
            }
        }
        return named.Where(n => n.Name is not null).GroupBy(n => n.Name).FirstOrDefault(g => g.Count() > 1) is { } repeated
            ? $"{SectionName}:{string.Join(" and ", repeated.Select(n => n.Key))} name the same role; each role needs a name of its own."
            : null;
    }
}

/// <summary>The four role names of one system database, validated as plain identifiers.</summary>
public sealed record SystemRoleNames(string Owner, string App, string Backup, string Definer)
{
    public static SystemRoleNames For(string database, SystemRoleOptions? options = null)
    {
        var names = new SystemRoleNames(
            options?.Owner ?? database + "_owner",
            options?.App ?? database + "_app",
            options?.Backup ?? database + "_backup",
            options?.Definer ?? database + "_definer");
        foreach (var name in names.All)
        {
            if (!SystemDatabaseRoles.RoleName().IsMatch(name))
            {
                throw new InvalidOperationException(
                    $"Role name '{name}' (from {SystemRoleOptions.SectionName} or the database name) is not a plain lower-case identifier of "
                        + "at most 63 characters.");
            }
        }
        if (names.All.Distinct().Count() != 4)
        {
            throw new InvalidOperationException($"The {SystemRoleOptions.SectionName} names must differ from each other.");
        }
        return names;
    }

    public IReadOnlyList<string> All => [Owner, App, Backup, Definer];
}

/// <summary>
/// Creates (idempotently) the system database's roles and puts the schema's privileges in order. Runs with the
/// server's admin credential (<c>ConnectionStrings:postgres</c>), which nothing else uses:
/// <list type="bullet">
/// <item><b>owner</b> (LOGIN BYPASSRLS): owns the database, the schema and every object in it; migrations,
/// seeding and the workspace verbs run as it, over every workspace. Never given to the API.</item>
/// <item><b>app</b> (LOGIN, nothing else): the API. SELECT/INSERT/UPDATE/DELETE on the tables (SELECT only on the
/// migration history), EXECUTE on the functions, member of <c>pg_read_all_stats</c> for the insights. Subject to
/// row-level security.</item>
/// <item><b>backup</b> (LOGIN BYPASSRLS): SELECT on everything, for pg_dump.</item>
/// <item><b>definer</b> (NOLOGIN BYPASSRLS): owns the SECURITY DEFINER functions that serve the few
/// cross-workspace reads; SELECT on the tables and nothing else.</item>
/// </list>
/// Every login role gets NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION, re-applied on every run so a drifted
/// role is put back. Passwords travel as SCRAM verifiers (<see cref="ScramVerifier"/>), never as text.
/// Run it again after migrations: objects a migration created are handed to the owner, SECURITY DEFINER
/// functions to the definer.
/// </summary>
public static partial class SystemDatabaseRoles
{
    public const string AdminConnectionName = "postgres";

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    internal static partial Regex RoleName();

    public sealed record Passwords(string? Owner, string? App, string? Backup);

    /// <param name="adminConnectionString">A superuser of the server; its Database is the system database.</param>
    /// <returns>One line per thing done or checked.</returns>
    public static async Task<IReadOnlyList<string>> EnsureAsync(string adminConnectionString, SystemRoleNames names, Passwords passwords,
        CancellationToken ct = default)
    {
        var lines = new List<string>();
        var target = new NpgsqlConnectionStringBuilder(adminConnectionString) { Pooling = false };
        var database = target.Database ?? throw new InvalidOperationException("The admin connection string names no system database.");
        var (owner, app, backup, definer) = (Q(names.Owner), Q(names.App), Q(names.Backup), Q(names.Definer));

        // Roles are cluster-wide: created from the maintenance database, with the system database if it is missing.
        await using (var server = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(target.ConnectionString) { Database = "postgres" }.ConnectionString))
        {
            await server.OpenAsync(ct);
            await using var serverTransaction = await server.BeginTransactionAsync(ct);
            // Two runs at once (two workers) take turns.
            await ExecuteAsync(server, "SELECT pg_advisory_xact_lock(7315310005130)", ct);
            const string Common = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION";
            await EnsureRoleAsync(server, names.Owner, $"LOGIN INHERIT BYPASSRLS {Common}", passwords.Owner, lines, ct);
            await EnsureRoleAsync(server, names.App, $"LOGIN INHERIT NOBYPASSRLS {Common}", passwords.App, lines, ct);
            await EnsureRoleAsync(server, names.Backup, $"LOGIN INHERIT BYPASSRLS {Common}", passwords.Backup, lines, ct);
            await EnsureRoleAsync(server, names.Definer, $"NOLOGIN NOINHERIT BYPASSRLS {Common}", password: null, lines, ct);
            await ExecuteAsync(server, $"GRANT pg_read_all_stats TO {app}", ct);
            await serverTransaction.CommitAsync(ct);

            await using var exists = new NpgsqlCommand("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", server);
            exists.Parameters.Add(new NpgsqlParameter { Value = database });
            if (await exists.ExecuteScalarAsync(ct) is false)
            {
                await ExecuteAsync(server, $"CREATE DATABASE {Q(database)} OWNER {owner}", ct);
                lines.Add($"created database {database}");
            }
        }

        await using var admin = new NpgsqlConnection(target.ConnectionString);
        await admin.OpenAsync(ct);
        await using var transaction = await admin.BeginTransactionAsync(ct);
        var db = Q(database);
        await ExecuteAsync(admin, $"""
            GRANT pg_read_all_stats TO {app};
            ALTER DATABASE {db} OWNER TO {owner};
            REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;
            GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {app}, {backup};
            ALTER SCHEMA public OWNER TO {owner};
            REVOKE ALL ON SCHEMA public FROM PUBLIC;
            GRANT USAGE ON SCHEMA public TO {app}, {backup}, {definer};
            """, ct);
        lines.Add($"'{names.Owner}' owns database {database} and its schema public; CONNECT for '{names.App}' and '{names.Backup}' only");

        var moved = await TransferOwnershipAsync(admin, names, ct);
        if (moved > 0) lines.Add($"handed {moved} object(s) to '{names.Owner}' (SECURITY DEFINER functions to '{names.Definer}')");

        await ExecuteAsync(admin, $"""
            REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}, {backup}, {definer};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};
            GRANT SELECT ON ALL TABLES IN SCHEMA public TO {backup}, {definer};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app};
            GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {backup};
            REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {app};
            ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};
            ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {backup}, {definer};
            ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app};
            ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON SEQUENCES TO {backup};
            ALTER DEFAULT PRIVILEGES FOR ROLE {owner} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
            ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {app};
            """, ct);
        // The definer's one write: reattach_detached_database hands a detached claim to the adopting workspace.
        if (await ScalarAsync(admin, "SELECT to_regclass('public.workspace_databases') IS NOT NULL", ct) is true)
        {
            await ExecuteAsync(admin, $"GRANT UPDATE ON public.workspace_databases TO {definer}", ct);
        }
        // The migration history is the owner's business: the API only reads it (are migrations pending?).
        if (await ScalarAsync(admin, "SELECT to_regclass('public.migrations') IS NOT NULL", ct) is true)
        {
            await ExecuteAsync(admin, $"REVOKE INSERT, UPDATE, DELETE ON public.migrations FROM {app}", ct);
        }
        // The grants above reach the activity log's partitions too: only the parent (and its policies) is for the app.
        await ExecuteAsync(admin, Activities.ActivityPartitions.SealPartitionsSql, ct);
        lines.Add($"granted '{names.App}' DML on the tables and EXECUTE on the functions (and pg_read_all_stats); "
            + $"'{names.Backup}' and '{names.Definer}' SELECT");
        // Not a trusted extension: the owner cannot create it in its migration, the admin can (where preloaded).
        await ExecuteAsync(admin, Migrations.LeastPrivilege.CreateWhereAllowed, ct);
        await transaction.CommitAsync(ct);
        return lines;
    }

    private static async Task EnsureRoleAsync(NpgsqlConnection admin, string name, string attributes, string? password, List<string> lines,
        CancellationToken ct)
    {
        await using var exists = new NpgsqlCommand("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", admin);
        exists.Parameters.Add(new NpgsqlParameter { Value = name });
        var found = await exists.ExecuteScalarAsync(ct) is true;
        var passwordClause = string.IsNullOrEmpty(password) ? "" : $" PASSWORD {L(ScramVerifier.Compute(password))}";
        await ExecuteAsync(admin, $"{(found ? "ALTER" : "CREATE")} ROLE {Q(name)} WITH {attributes}{passwordClause}", ct);
        lines.Add($"{(found ? "checked" : "created")} role '{name}' ({attributes}{(passwordClause.Length > 0 ? "; password set" : "")})");
    }

    /// <summary>Tables, views, sequences and functions of schema public not yet owned by the right role.</summary>
    private static async Task<int> TransferOwnershipAsync(NpgsqlConnection admin, SystemRoleNames names, CancellationToken ct)
    {
        var statements = new List<string>();
        await using (var command = new NpgsqlCommand("""
            SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                   format('%I.%I', n.nspname, c.relname), false
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND pg_get_userbyid(c.relowner) <> $1
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i')
                                AND d.refobjid <> c.oid -- a partitioned table depends (internally) on its own key columns
                                AND NOT (c.relispartition AND d.deptype = 'a')) -- a partition depends on its table, yet has an owner of its own
            UNION ALL
            SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text, p.prosecdef
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
              AND pg_get_userbyid(p.proowner) <> CASE WHEN p.prosecdef THEN $2 ELSE $1 END
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
            """, admin))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = names.Owner });
            command.Parameters.Add(new NpgsqlParameter { Value = names.Definer });
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                // The object's name comes from the catalog, already quoted by format/regprocedure.
                var newOwner = reader.GetBoolean(2) ? names.Definer : names.Owner;
                statements.Add($"ALTER {reader.GetString(0)} {reader.GetString(1)} OWNER TO {Q(newOwner)}");
            }
        }
        foreach (var statement in statements) await ExecuteAsync(admin, statement, ct);
        return statements.Count;
    }

    /// <summary>
    /// The admin connection string and the options of the running process (names default from the system database's
    /// name in <c>ConnectionStrings:tcstudio</c>).
    /// </summary>
    public static (string Admin, SystemRoleNames Names, Passwords Passwords)? FromConfiguration(IConfiguration configuration)
    {
        if (configuration.GetConnectionString(AdminConnectionName) is not { Length: > 0 } adminConnectionString) return null;
        var system = new NpgsqlConnectionStringBuilder(SystemDatabaseConnection.ReadConnectionString(configuration)
            ?? throw new InvalidOperationException($"Connection string '{SystemDatabaseConnection.ConnectionStringKey}' is not set."));
        var options = (configuration.GetSection(SystemRoleOptions.SectionName).Get<SystemRoleOptions>() ?? new SystemRoleOptions())
            .Checked(SystemRoleOptions.FindError);
        var names = SystemRoleNames.For(system.Database ?? throw new InvalidOperationException(
            $"Connection string '{SystemDatabaseConnection.ConnectionStringKey}' names no Database."), options);
        var ownerPassword = options.OwnerPassword
            ?? (string.Equals(system.Username, names.Owner, StringComparison.Ordinal) ? system.Password : null);
        // Through the system database's SSH tunnel when it has one (the admin credential is for the same server).
        var admin = Ssh.SshTunnels.Shared.Route(new NpgsqlConnectionStringBuilder(adminConnectionString) { Database = system.Database,
            Pooling = false },
            configuration.GetSection($"{DatabaseOptions.SectionName}:{Ssh.SshTunnelOptions.SectionName}"), Ssh.SshTunnels.SystemServerName,
                open: true);
        return (admin.ConnectionString, names, new Passwords(ownerPassword, options.AppPassword, options.BackupPassword));
    }

    private static string Q(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";
    private static string L(string value) => "'" + value.Replace("'", "''") + "'";

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(ct);
    }
}
