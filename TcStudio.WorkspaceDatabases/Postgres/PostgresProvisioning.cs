using System.Text.RegularExpressions;
using Npgsql;

namespace TcStudio.WorkspaceDatabases.Postgres;

/// <summary>
/// How a PostgreSQL workspace server gets workspace roles without giving TC Studio's credential CREATEROLE (which on
/// PostgreSQL 15 can GRANT pg_execute_server_program to itself, i.e. run programs as the server's OS user).
/// <para>The worker's bootstrap (<c>workspaces bootstrap</c>), with the server's admin credential, installs in the
/// database the deploy credential connects to a schema <c>tcstudio_provisioning</c> holding a registry of the roles it
/// made and three SECURITY DEFINER functions owned by the admin, with a fixed search_path, every argument validated,
/// identifiers and literals quoted with format(%I/%L), EXECUTE revoked from PUBLIC and granted to the deploy
/// credential (the provisioner login: LOGIN CREATEDB, nothing else):</para>
/// <list type="bullet">
/// <item><c>create_workspace_role(new_role, verifier, max_connections, statement_timeout_ms, temp_file_limit_kb, work_mem_kb)</c>:
/// only names <c>tcws_&lt;32 hex&gt;_owner|exec</c>, only SCRAM-SHA-256 verifiers (never a password), fixed attributes
/// LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS, a connection limit of 1–1000 and the
/// role settings statement_timeout, temp_file_limit (a superuser setting: only this function can set it) and work_mem,
/// each within bounds (v2; v1 had no settings); an existing role only if it made it; then
/// grants the role to the caller (session_user), so the caller can CREATE DATABASE ... OWNER it, grant in it, and
/// later drop it;</item>
/// <item><c>grant_workspace_role(existing_role)</c>: grants a role it made (or one an earlier TC Studio made, recognised
/// by its name pattern and comment) to the caller, to convert or adopt a database those roles own;</item>
/// <item><c>drop_workspace_role(old_role)</c>: drops such a role, nothing else.</item>
/// </list>
/// A deploy credential that is a superuser needs none of this, but the API still goes through the functions,
/// installing them itself on first use.
/// </summary>
public static partial class PostgresProvisioning
{
    public const string Schema = "tcstudio_provisioning";
    public const int Version = 2;
    public const string VersionComment = "tcstudio provisioning v2";

    private static readonly string[] Functions =
    [
        $"{Schema}.create_workspace_role(text, text, integer, integer, integer, integer)",
        $"{Schema}.grant_workspace_role(text)",
        $"{Schema}.drop_workspace_role(text)",
    ];

    /// <summary>Idempotent: the schema, the registry and the functions, owned by whoever runs it (the admin).</summary>
    public const string InstallSql = """
        CREATE SCHEMA IF NOT EXISTS tcstudio_provisioning;
        COMMENT ON SCHEMA tcstudio_provisioning
            IS 'TC Studio: creates and drops workspace roles for the provisioner login (installed by the worker''s workspaces bootstrap)';
        REVOKE ALL ON SCHEMA tcstudio_provisioning FROM PUBLIC;

        CREATE TABLE IF NOT EXISTS tcstudio_provisioning.workspace_roles (
            role_name name PRIMARY KEY,
            created_by name NOT NULL DEFAULT session_user,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        REVOKE ALL ON tcstudio_provisioning.workspace_roles FROM PUBLIC;

        CREATE OR REPLACE FUNCTION tcstudio_provisioning.is_tcstudio_role(candidate text) RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
            SELECT EXISTS (SELECT 1 FROM tcstudio_provisioning.workspace_roles w WHERE w.role_name = candidate)
                OR (candidate ~ '^tcws_[a-z0-9_]{1,56}_(owner|exec)$'
                    AND coalesce(shobj_description((SELECT r.oid FROM pg_roles r WHERE r.rolname = candidate), 'pg_authid'), '')
                        LIKE 'TC Studio workspace database %')
        $fn$;
        REVOKE ALL ON FUNCTION tcstudio_provisioning.is_tcstudio_role(text) FROM PUBLIC;

        -- v1's signature had no limits; v2 replaces it (one way to create a role, with its limits).
        DROP FUNCTION IF EXISTS tcstudio_provisioning.create_workspace_role(text, text, integer);

        CREATE OR REPLACE FUNCTION tcstudio_provisioning.create_workspace_role(new_role text, verifier text, max_connections integer,
            statement_timeout_ms integer, temp_file_limit_kb integer, work_mem_kb integer)
        RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
        DECLARE
            found_role pg_roles%ROWTYPE;
        BEGIN
            IF new_role IS NULL OR new_role !~ '^tcws_[0-9a-f]{32}_(owner|exec)$' THEN
                RAISE EXCEPTION 'tcstudio: % is not a workspace role name (tcws_<32 hex digits>_owner or _exec)',
                    coalesce(quote_literal(new_role), 'NULL') USING ERRCODE = '22023';
            END IF;
            IF verifier IS NULL OR verifier !~ '^SCRAM-SHA-256\$[0-9]{4,7}:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$' THEN
                RAISE EXCEPTION 'tcstudio: the password must be given as a SCRAM-SHA-256 verifier' USING ERRCODE = '22023';
            END IF;
            IF max_connections IS NULL OR max_connections NOT BETWEEN 1 AND 1000 THEN
                RAISE EXCEPTION 'tcstudio: the connection limit must be between 1 and 1000' USING ERRCODE = '22023';
            END IF;
            IF statement_timeout_ms IS NULL OR statement_timeout_ms NOT BETWEEN 1000 AND 86400000 THEN
                RAISE EXCEPTION 'tcstudio: statement_timeout must be between 1 s and 1 day (in ms)' USING ERRCODE = '22023';
            END IF;
            IF temp_file_limit_kb IS NULL OR temp_file_limit_kb NOT BETWEEN 1024 AND 1073741824 THEN
                RAISE EXCEPTION 'tcstudio: temp_file_limit must be between 1 MB and 1 TB (in kB)' USING ERRCODE = '22023';
            END IF;
            IF work_mem_kb IS NULL OR work_mem_kb NOT BETWEEN 64 AND 4194304 THEN
                RAISE EXCEPTION 'tcstudio: work_mem must be between 64 kB and 4 GB (in kB)' USING ERRCODE = '22023';
            END IF;
            SELECT * INTO found_role FROM pg_roles r WHERE r.rolname = new_role;
            IF FOUND THEN
                IF NOT EXISTS (SELECT 1 FROM tcstudio_provisioning.workspace_roles w WHERE w.role_name = new_role) THEN
                    RAISE EXCEPTION 'tcstudio: role % exists and was not created by TC Studio', quote_ident(new_role) USING ERRCODE = '42710';
                END IF;
                IF found_role.rolsuper OR found_role.rolreplication OR found_role.rolbypassrls THEN
                    RAISE EXCEPTION 'tcstudio: role % has been given privileges a workspace role must not have', quote_ident(new_role)
                        USING ERRCODE = '42501';
                END IF;
                EXECUTE format('ALTER ROLE %I WITH LOGIN NOCREATEDB NOCREATEROLE NOINHERIT CONNECTION LIMIT %s PASSWORD %L',
                    new_role, max_connections, verifier);
            ELSE
                EXECUTE format('CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS '
                    || 'CONNECTION LIMIT %s PASSWORD %L',
                    new_role, max_connections, verifier);
                EXECUTE format('COMMENT ON ROLE %I IS %L', new_role, 'TC Studio workspace role (tcstudio_provisioning)');
                INSERT INTO tcstudio_provisioning.workspace_roles (role_name) VALUES (new_role);
            END IF;
            -- Role settings apply to every session the role opens, in any database.
            EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', new_role, statement_timeout_ms || 'ms');
            EXECUTE format('ALTER ROLE %I SET temp_file_limit = %L', new_role, temp_file_limit_kb || 'kB');
            EXECUTE format('ALTER ROLE %I SET work_mem = %L', new_role, work_mem_kb || 'kB');
            -- The caller may then create the database owned by the role, grant in it, and drop it later.
            EXECUTE format('GRANT %I TO %I', new_role, session_user);
        END
        $fn$;

        CREATE OR REPLACE FUNCTION tcstudio_provisioning.grant_workspace_role(existing_role text)
        RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
        DECLARE
            found_role pg_roles%ROWTYPE;
        BEGIN
            IF existing_role IS NULL OR existing_role !~ '^tcws_[a-z0-9_]{1,56}_(owner|exec)$' THEN
                RAISE EXCEPTION 'tcstudio: % is not a workspace role name', coalesce(quote_literal(existing_role), 'NULL') USING ERRCODE = '22023';
            END IF;
            SELECT * INTO found_role FROM pg_roles r WHERE r.rolname = existing_role;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'tcstudio: role % does not exist', quote_ident(existing_role) USING ERRCODE = '42704';
            END IF;
            IF NOT tcstudio_provisioning.is_tcstudio_role(existing_role) THEN
                RAISE EXCEPTION 'tcstudio: role % was not created by TC Studio', quote_ident(existing_role) USING ERRCODE = '42501';
            END IF;
            IF found_role.rolsuper OR found_role.rolcreaterole OR found_role.rolcreatedb OR found_role.rolreplication OR found_role.rolbypassrls THEN
                RAISE EXCEPTION 'tcstudio: role % has privileges a workspace role must not have', quote_ident(existing_role) USING ERRCODE = '42501';
            END IF;
            EXECUTE format('GRANT %I TO %I', existing_role, session_user);
        END
        $fn$;

        CREATE OR REPLACE FUNCTION tcstudio_provisioning.drop_workspace_role(old_role text)
        RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
        DECLARE
            found_role pg_roles%ROWTYPE;
        BEGIN
            IF old_role IS NULL OR old_role !~ '^tcws_[a-z0-9_]{1,56}_(owner|exec)$' THEN
                RAISE EXCEPTION 'tcstudio: % is not a workspace role name', coalesce(quote_literal(old_role), 'NULL') USING ERRCODE = '22023';
            END IF;
            SELECT * INTO found_role FROM pg_roles r WHERE r.rolname = old_role;
            IF NOT FOUND THEN
                DELETE FROM tcstudio_provisioning.workspace_roles w WHERE w.role_name = old_role;
                RETURN false;
            END IF;
            IF NOT tcstudio_provisioning.is_tcstudio_role(old_role) THEN
                RAISE EXCEPTION 'tcstudio: role % was not created by TC Studio', quote_ident(old_role) USING ERRCODE = '42501';
            END IF;
            IF found_role.rolsuper OR found_role.rolcreaterole OR found_role.rolcreatedb OR found_role.rolreplication OR found_role.rolbypassrls THEN
                RAISE EXCEPTION 'tcstudio: role % has privileges a workspace role must not have', quote_ident(old_role) USING ERRCODE = '42501';
            END IF;
            EXECUTE format('DROP ROLE %I', old_role);
            DELETE FROM tcstudio_provisioning.workspace_roles w WHERE w.role_name = old_role;
            RETURN true;
        END
        $fn$;

        COMMENT ON FUNCTION tcstudio_provisioning.create_workspace_role(text, text, integer, integer, integer, integer) IS 'tcstudio provisioning v2';
        REVOKE ALL ON FUNCTION tcstudio_provisioning.create_workspace_role(text, text, integer, integer, integer, integer) FROM PUBLIC;
        REVOKE ALL ON FUNCTION tcstudio_provisioning.grant_workspace_role(text) FROM PUBLIC;
        REVOKE ALL ON FUNCTION tcstudio_provisioning.drop_workspace_role(text) FROM PUBLIC;
        """;

    /// <summary>What the connection's user finds on its server: the functions' version (null: not installed) and its rights.</summary>
    public sealed record State(int? InstalledVersion, bool CanExecute, bool IsSuperuser, string CurrentUser);

    public static async Task<State> ReadStateAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT (SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'tcstudio_provisioning' AND p.proname = 'create_workspace_role' LIMIT 1),
                   (SELECT has_schema_privilege(n.oid, 'USAGE') FROM pg_namespace n WHERE n.nspname = 'tcstudio_provisioning')
                   AND (SELECT bool_and(has_function_privilege(p.oid, 'EXECUTE')) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = 'tcstudio_provisioning'
                          AND p.proname IN ('create_workspace_role', 'grant_workspace_role', 'drop_workspace_role')),
                   (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                   current_user
            """, connection);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var comment = reader.IsDBNull(0) ? null : reader.GetString(0);
        int? version = comment is null ? null : VersionInComment().Match(comment) is { Success: true } m ? int.Parse(m.Groups[1].Value) : 0;
        return new State(version, !reader.IsDBNull(1) && reader.GetBoolean(1), reader.GetBoolean(2), reader.GetString(3));
    }

    /// <summary>
    /// Installs or updates the functions (one transaction, serialized by an advisory lock); grants them to
    /// <paramref name="grantee"/>.
    /// </summary>
    public static async Task InstallAsync(NpgsqlConnection admin, string? grantee, CancellationToken ct)
    {
        await using var transaction = await admin.BeginTransactionAsync(ct);
        await ExecuteAsync(admin, "SELECT pg_advisory_xact_lock(hashtextextended('tcstudio_provisioning', 0))", ct);
        await using (var owner = new NpgsqlCommand(
            "SELECT pg_get_userbyid(nspowner) = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) FROM pg_namespace WHERE "
                + "nspname = 'tcstudio_provisioning'",
            admin))
        {
            if (await owner.ExecuteScalarAsync(ct) is false)
            {
                throw new InvalidOperationException("Schema tcstudio_provisioning exists and belongs to another role; drop it or run the "
                    + "bootstrap as its owner.");
            }
        }
        await ExecuteAsync(admin, InstallSql, ct);
        if (grantee is not null) await GrantAsync(admin, grantee, ct);
        await transaction.CommitAsync(ct);
    }

    /// <summary>USAGE on the schema and EXECUTE on the functions (and nothing on the registry) for the provisioner login.</summary>
    public static Task GrantAsync(NpgsqlConnection admin, string grantee, CancellationToken ct)
    {
        var role = QuoteIdentifier(grantee);
        return ExecuteAsync(admin, $"GRANT USAGE ON SCHEMA {Schema} TO {role};\n"
            + string.Concat(Functions.Select(f => $"GRANT EXECUTE ON FUNCTION {f} TO {role};\n")), ct);
    }

    /// <summary>What each workspace role may take of the server (Workspaces:Limits, and the largest execute timeout).</summary>
    public sealed record RoleLimits(int Connections, int StatementTimeoutMilliseconds, int TempFileLimitKilobytes, int WorkMemKilobytes);

    public static async Task CreateRoleAsync(NpgsqlConnection connection, string role, string verifier, RoleLimits limits, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT {Schema}.create_workspace_role($1, $2, $3, $4, $5, $6)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = role });
        command.Parameters.Add(new NpgsqlParameter { Value = verifier });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.Connections });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.StatementTimeoutMilliseconds });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.TempFileLimitKilobytes });
        command.Parameters.Add(new NpgsqlParameter { Value = limits.WorkMemKilobytes });
        await command.ExecuteNonQueryAsync(ct);
    }

    public static async Task GrantRoleAsync(NpgsqlConnection connection, string role, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT {Schema}.grant_workspace_role($1)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = role });
        await command.ExecuteNonQueryAsync(ct);
    }

    public static async Task<bool> DropRoleAsync(NpgsqlConnection connection, string role, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT {Schema}.drop_workspace_role($1)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = role });
        return await command.ExecuteScalarAsync(ct) is true;
    }

    /// <summary>What the bootstrap found and did about the provisioner login, one line each.</summary>
    public sealed record ProvisionerReport(IReadOnlyList<string> Lines, IReadOnlyList<string> Warnings);

    /// <summary>
    /// Creates (with <paramref name="create"/>) or checks the provisioner login: LOGIN CREATEDB INHERIT and nothing
    /// else, its password set as a SCRAM verifier (never in SQL text), CONNECT on <paramref name="database"/>, and
    /// EXECUTE on the functions.
    /// </summary>
    public static async Task<ProvisionerReport> EnsureProvisionerAsync(NpgsqlConnection admin, string login, string? password, string database,
        bool create, CancellationToken ct)
    {
        var lines = new List<string>();
        var warnings = new List<string>();
        if (!RoleName().IsMatch(login))
        {
            throw new InvalidOperationException($"The deploy login name '{login}' is not a plain identifier (letters, digits, '_').");
        }
        var quoted = QuoteIdentifier(login);
        await using var read = new NpgsqlCommand(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolname = current_user FROM pg_roles "
                + "WHERE rolname = $1", admin);
        read.Parameters.Add(new NpgsqlParameter { Value = login });
        bool exists, super = false, createRole = false, createDb = false, canLogin = false, replication = false, bypass = false, isAdmin = false;
        await using (var reader = await read.ExecuteReaderAsync(ct))
        {
            exists = await reader.ReadAsync(ct);
            if (exists)
            {
                (super, createRole, createDb, canLogin, replication, bypass, isAdmin) = (reader.GetBoolean(0), reader.GetBoolean(1),
                    reader.GetBoolean(2),
                    reader.GetBoolean(3), reader.GetBoolean(4), reader.GetBoolean(5), reader.GetBoolean(6));
            }
        }

        if (isAdmin)
        {
            warnings.Add($"the deploy credential is the admin login '{login}' itself: it works, but the API then holds the admin's rights. "
                + "Give the server a provisioner login of its own (see README, Security).");
            return new ProvisionerReport(lines, warnings);
        }
        if (!exists)
        {
            if (!create)
            {
                throw new InvalidOperationException($"The deploy login '{login}' does not exist; run the bootstrap with "
                    + "--create-provisioner to create it.");
            }
            if (string.IsNullOrEmpty(password)) throw new InvalidOperationException($"The deploy connection string gives no password for '{login}'.");
            await ExecuteAsync(admin,
                $"CREATE ROLE {quoted} WITH LOGIN CREATEDB INHERIT NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD "
                    + $"{QuoteLiteral(ScramVerifier.Compute(password))}", ct);
            lines.Add($"created the provisioner login '{login}' (LOGIN CREATEDB, nothing else)");
        }
        else
        {
            if (super)
            {
                warnings.Add($"'{login}' is a superuser: it works, but is not least privilege (the provisioner needs CREATEDB and EXECUTE "
                    + "on the functions only).");
            }
            if (createRole && !super)
            {
                warnings.Add($"'{login}' has CREATEROLE: on PostgreSQL 15 that is as good as superuser (it can GRANT pg_execute_server_program to "
                    + $"itself). Remove it: ALTER ROLE {quoted} NOCREATEROLE.");
            }
            if ((replication || bypass) && !super) warnings.Add($"'{login}' has REPLICATION or BYPASSRLS, which the provisioner does not need.");
            if (create)
            {
                if (!createDb || !canLogin) await ExecuteAsync(admin, $"ALTER ROLE {quoted} WITH LOGIN CREATEDB", ct);
                if (!string.IsNullOrEmpty(password) && !super)
                {
                    await ExecuteAsync(admin, $"ALTER ROLE {quoted} WITH PASSWORD {QuoteLiteral(ScramVerifier.Compute(password))}", ct);
                }
                lines.Add($"checked the provisioner login '{login}' (LOGIN CREATEDB; password set from the deploy connection string)");
            }
            else if (!createDb && !super)
            {
                throw new InvalidOperationException($"The deploy login '{login}' lacks CREATEDB; run the bootstrap with --create-provisioner, or "
                    + $"ALTER ROLE {quoted} CREATEDB.");
            }
            else
            {
                lines.Add($"checked the provisioner login '{login}'");
            }
        }
        await ExecuteAsync(admin, $"GRANT CONNECT ON DATABASE {QuoteIdentifier(database)} TO {quoted}", ct);
        await GrantAsync(admin, login, ct);
        lines.Add($"granted '{login}' CONNECT on {database} and EXECUTE on the provisioning functions");
        return new ProvisionerReport(lines, warnings);
    }

    internal static string QuoteIdentifier(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";
    internal static string QuoteLiteral(string value) => "'" + value.Replace("'", "''") + "'";

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    [GeneratedRegex(@"provisioning v(\d+)")]
    private static partial Regex VersionInComment();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    private static partial Regex RoleName();
}
