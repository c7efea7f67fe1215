using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using TcStudio.SystemDatabase.Entities;
using static TcStudio.WorkspaceDatabases.Postgres.PostgresSqlText;

namespace TcStudio.WorkspaceDatabases.Postgres;

/// <summary>
/// PostgreSQL workspace databases (Npgsql). Drafts are CREATE [OR REPLACE] FUNCTION|PROCEDURE statements.
/// <list type="bullet">
/// <item>Validation: the draft must be exactly one such statement naming the draft's routine (checked by
/// <see cref="PostgresSqlText"/> without a server); then it runs as the database's owner role in a transaction that
/// is always rolled back, with check_function_bodies on, so PL/pgSQL and SQL bodies are parsed by the server itself.</item>
/// <item>The server holds the line whatever the static check said: a draft's text only ever travels as one
/// extended-protocol statement (<see cref="RunDraftStatementAsync"/>: PostgreSQL refuses a second statement with
/// 42601), and the catalog, read in the same transaction, must show the named routine created, not SECURITY
/// DEFINER, with the transaction still the one the service began (<see cref="CreateOrReplaceAsync"/>).</item>
/// <item>Deploy: in one transaction, as the owner role: the previous definitions (pg_get_functiondef) are captured,
/// the draft runs (and is checked) as above, other overloads of the same name are dropped (one name, one routine:
/// like CREATE OR ALTER) and the deployment is recorded in tcstudio.procedure_deployments.</item>
/// <item>Execute (as the exec role, in one transaction that commits): procedures by CALL, their OUT/INOUT values
/// as outputParameters; functions by SELECT * FROM f(...), their rows as a result set. Multiple result sets come
/// from refcursors: a procedure's refcursor OUT/INOUT parameters, or a function returning refcursor or SETOF
/// refcursor; each cursor is fetched (up to the row cap) as one result set, in order. Routines that COMMIT or
/// ROLLBACK themselves cannot be executed this way (they would need to run outside a transaction block).</item>
/// </list>
/// </summary>
public sealed class PostgresWorkspaceProvider(IOptions<WorkspacesOptions> options) : WorkspaceDatabaseProvider<NpgsqlConnection>
{
    public const string DefaultSchema = "public";

    public override string Name => WorkspaceProviders.Postgres;
    public override IReadOnlyList<WorkspaceMigration> Migrations => WorkspaceMigrations.For(WorkspaceProviders.Postgres);
    public override int MaxDatabaseNameLength => 63;

    private int OperationTimeoutSeconds => WorkspacesOptions.WholeSeconds(options.Value.OperationTimeout);

    public override IWorkspaceConnectionSource CreateConnectionSource(WorkspaceServer server, WorkspaceTarget target, WorkspaceOwnership ownership,
        string applicationName, WorkspacesOptions settings) => new PostgresConnectionSource(server, target, ownership, applicationName, settings);

    public override async Task PingAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT 1", connection);
        command.CommandTimeout = WorkspacesOptions.WholeSeconds(options.Value.ConnectTimeout);
        await command.ExecuteScalarAsync(cancellationToken);
    }

    // ---- Server-level work (deploy credential, unpooled) ----
    // The deploy credential is the server's provisioner login (CREATEDB and EXECUTE on the provisioning functions,
    // nothing else; see PostgresProvisioning), or a superuser. Roles come only from the provisioning functions, and
    // passwords only ever travel as SCRAM verifiers: nothing here puts a password in SQL text.

    private NpgsqlConnection AdminConnection(WorkspaceServer server, string? database = null)
    {
        var builder = new NpgsqlConnectionStringBuilder(server.ConnectionString)
        {
            Pooling = false,
            ApplicationName = "tcstudio-workspace-admin",
            Timeout = WorkspacesOptions.WholeSeconds(options.Value.ConnectTimeout),
            CommandTimeout = OperationTimeoutSeconds,
        };
        if (database is not null) builder.Database = database;
        else if (string.IsNullOrEmpty(builder.Database)) builder.Database = "postgres";
        return DatabaseTelemetry.NpgsqlDataSources.CreateUnpooledConnection(DatabaseTelemetry.NpgsqlDataSources.WorkspaceAdmin, builder);
    }

    public override async Task<bool> DatabaseExistsAsync(WorkspaceServer server, string database, CancellationToken cancellationToken) =>
        await DatabaseOwnerAsync(server, database, cancellationToken) is not null;

    public override async Task<string?> DatabaseOwnerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = database });
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public override async Task CreateDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership,
        CancellationToken cancellationToken)
    {
        var roles = RolesOf(ownership);
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await EnsureRolesAsync(connection, server, roles, cancellationToken);
        // Made by the deploy login, then handed over (public schema included) to the environment's own owner role.
        await ExecuteAsync(connection, $"CREATE DATABASE {Quote(database)}", cancellationToken);
        await HandOverAsync(connection, server, database, roles.OwnerRole, cancellationToken);
    }

    /// <summary>
    /// Makes the environment's owner role the owner of the database and of its public schema. The workspace roles are
    /// NOINHERIT, so the implicit pg_database_owner membership gives the owner role no rights on a public schema owned
    /// by pg_database_owner (PostgreSQL 15's default): the schema is given to the role itself. Only the database's
    /// owner may do that, so the deploy login owns the database for that moment (it may: it is a member of the current
    /// owner role, and CREATEDB), then hands it over.
    /// </summary>
    private async Task HandOverAsync(NpgsqlConnection serverConnection, WorkspaceServer server, string database, string ownerRole,
        CancellationToken ct)
    {
        await ExecuteAsync(serverConnection, $"ALTER DATABASE {Quote(database)} OWNER TO CURRENT_USER", ct);
        await using (var connection = AdminConnection(server, database))
        {
            await connection.OpenAsync(ct);
            await ExecuteAsync(connection, $"""
                DO $handover$
                BEGIN
                    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN
                        ALTER SCHEMA public OWNER TO {Quote(ownerRole)};
                    ELSE
                        CREATE SCHEMA public AUTHORIZATION {Quote(ownerRole)};
                    END IF;
                END
                $handover$
                """, ct);
        }
        await ExecuteAsync(serverConnection, $"ALTER DATABASE {Quote(database)} OWNER TO {Quote(ownerRole)}", ct);
    }

    public override async Task PrepareDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, bool writeMarker,
        CancellationToken cancellationToken)
    {
        var roles = RolesOf(ownership);
        var (owner, exec) = (Quote(roles.OwnerRole), Quote(roles.ExecuteRole));
        await using (var connection = AdminConnection(server))
        {
            await connection.OpenAsync(cancellationToken);
            await EnsureRolesAsync(connection, server, roles, cancellationToken);
            if (!await PublicSchemaOwnedByAsync(server, database, roles.OwnerRole, cancellationToken))
            {
                await HandOverAsync(connection, server, database, roles.OwnerRole, cancellationToken);
            }
            // Nobody but the environment's roles (and the operator's) may connect: the roles of other workspaces on
            // this server cannot reach this database, nor these roles theirs.
            await ExecuteAsync(connection, $"""
                REVOKE ALL ON DATABASE {Quote(database)} FROM PUBLIC;
                GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {Quote(database)} TO {owner};
                GRANT CONNECT, TEMPORARY ON DATABASE {Quote(database)} TO {exec};
                """, cancellationToken);
        }

        await using (var connection = AdminConnection(server, database))
        {
            await connection.OpenAsync(cancellationToken);
            if (writeMarker) await WriteMarkerAsync(connection, ownership, cancellationToken);
            await ExecuteAsync(connection, $"""
                GRANT USAGE ON SCHEMA public TO {exec};
                ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT EXECUTE ON ROUTINES TO {exec};
                ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {exec};
                ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {exec};
                """, cancellationToken);
        }
    }

    public override async Task TakeOverDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership,
        IReadOnlyList<string> previousRoles,
        CancellationToken cancellationToken)
    {
        var roles = RolesOf(ownership);
        var previous = new List<string>();
        await using (var connection = AdminConnection(server))
        {
            await connection.OpenAsync(cancellationToken);
            await EnsureRolesAsync(connection, server, roles, cancellationToken);
            foreach (var role in previousRoles.Where(r => !roles.Names.Contains(r)).Distinct())
            {
                await using var membership = new NpgsqlCommand(
                    "SELECT pg_has_role(current_user, oid, 'USAGE') FROM pg_roles WHERE rolname = $1", connection);
                membership.Parameters.Add(new NpgsqlParameter { Value = role });
                var isMember = await membership.ExecuteScalarAsync(cancellationToken);
                if (isMember is null) continue; // gone already
                if (isMember is false) await PostgresProvisioning.GrantRoleAsync(connection, role, cancellationToken);
                previous.Add(role);
            }
            // The hand-over starts with ALTER DATABASE ... OWNER TO CURRENT_USER, refused (42501) unless the deploy
            // credential owns the database (directly, or through an earlier environment's role): a database of another
            // application stays out of reach.
            await HandOverAsync(connection, server, database, roles.OwnerRole, cancellationToken);
        }
        await using (var inDatabase = AdminConnection(server, database))
        {
            await inDatabase.OpenAsync(cancellationToken);
            foreach (var role in previous)
            {
                // Schemas first (a routine moves only into a schema its new owner may create in), then the rest; then the
                // previous role's privileges and default privileges go, so it can be dropped.
                await ExecuteAsync(inDatabase, $"""
                    DO $schemas$
                    DECLARE
                        s name;
                    BEGIN
                        FOR s IN SELECT nspname FROM pg_namespace WHERE nspowner = {Literal(role)}::regrole LOOP
                            EXECUTE format('ALTER SCHEMA %I OWNER TO %I', s, {Literal(roles.OwnerRole)});
                        END LOOP;
                    END
                    $schemas$;
                    REASSIGN OWNED BY {Quote(role)} TO {Quote(roles.OwnerRole)};
                    DROP OWNED BY {Quote(role)};
                    """, cancellationToken);
            }
            // What the previous roles' privileges and default privileges gave (dropped with them), for the new ones:
            // the execute role uses every schema the owner role owns, except TC Studio's own.
            await ExecuteAsync(inDatabase, $"""
                DO $grants$
                DECLARE
                    s name;
                BEGIN
                    FOR s IN SELECT nspname FROM pg_namespace
                             WHERE nspowner = {Literal(roles.OwnerRole)}::regrole AND nspname NOT IN ('tcstudio', '{WorkspaceMarker.Schema}')
                    LOOP
                        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, {Literal(roles.ExecuteRole)});
                        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', s, {Literal(roles.ExecuteRole)});
                        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s, {Literal(roles.ExecuteRole)});
                        EXECUTE format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA %I TO %I', s, {Literal(roles.ExecuteRole)});
                        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I',
                            {Literal(roles.OwnerRole)}, s, {Literal(roles.ExecuteRole)});
                        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I',
                            {Literal(roles.OwnerRole)}, s, {Literal(roles.ExecuteRole)});
                        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT EXECUTE ON ROUTINES TO %I',
                            {Literal(roles.OwnerRole)}, s, {Literal(roles.ExecuteRole)});
                    END LOOP;
                END
                $grants$
                """, cancellationToken);
        }
        await PrepareDatabaseAsync(server, database, ownership, writeMarker: true, cancellationToken);
        await DropRolesAsync(server, previous, cancellationToken);
    }

    private async Task<bool> PublicSchemaOwnedByAsync(WorkspaceServer server, string database, string role, CancellationToken ct)
    {
        await using var connection = AdminConnection(server, database);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT pg_get_userbyid(nspowner) = $1 FROM pg_namespace WHERE nspname = 'public'", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = role });
        return await command.ExecuteScalarAsync(ct) is true;
    }

    public override async Task<WorkspaceMarker?> ReadMarkerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server, database);
        await connection.OpenAsync(cancellationToken);
        return await ReadMarkerAsync(connection, cancellationToken);
    }

    /// <summary>The marker as this connection's role may read it; null when the database has none.</summary>
    internal static async Task<WorkspaceMarker?> ReadMarkerAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            $"SELECT workspace_id, environment_id, database_id FROM {WorkspaceMarker.Schema}.marker", connection);
        try
        {
            await using var reader = await command.ExecuteReaderAsync(ct);
            return await reader.ReadAsync(ct) ? new WorkspaceMarker(reader.GetGuid(0), reader.GetGuid(1), reader.GetGuid(2)) : null;
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName
                                              or PostgresErrorCodes.InsufficientPrivilege)
        {
            return null;
        }
    }

    private static async Task WriteMarkerAsync(NpgsqlConnection connection, WorkspaceOwnership ownership, CancellationToken ct)
    {
        // Only the deploy credential may own the marker: one a workspace role made (to forge it) is dropped first.
        await using (var owner = new NpgsqlCommand($"""
            SELECT pg_get_userbyid(nspowner) <> current_user AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            FROM pg_namespace WHERE nspname = '{WorkspaceMarker.Schema}'
            """, connection))
        {
            if (await owner.ExecuteScalarAsync(ct) is true) await ExecuteAsync(connection, $"DROP SCHEMA {WorkspaceMarker.Schema} CASCADE", ct);
        }
        await ExecuteAsync(connection, $"""
            CREATE SCHEMA IF NOT EXISTS {WorkspaceMarker.Schema};
            COMMENT ON SCHEMA {WorkspaceMarker.Schema}
                IS 'TC Studio: which workspace environment this database belongs to; checked before every connection is used';
            REVOKE ALL ON SCHEMA {WorkspaceMarker.Schema} FROM PUBLIC;
            CREATE TABLE IF NOT EXISTS {WorkspaceMarker.Schema}.marker (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                workspace_id uuid NOT NULL,
                environment_id uuid NOT NULL,
                database_id uuid NOT NULL,
                server_identity text NOT NULL,
                written_at timestamptz NOT NULL DEFAULT now()
            );
            REVOKE ALL ON {WorkspaceMarker.Schema}.marker FROM PUBLIC;
            -- Readable by whoever may connect (the environment's roles, the deploy login; ids only, nothing secret), so every
            -- connection can check it; written only by its owner, the deploy login.
            GRANT USAGE ON SCHEMA {WorkspaceMarker.Schema} TO PUBLIC;
            GRANT SELECT ON {WorkspaceMarker.Schema}.marker TO PUBLIC;
            """, ct);
        await using var write = new NpgsqlCommand($"""
            INSERT INTO {WorkspaceMarker.Schema}.marker (singleton, workspace_id, environment_id, database_id, server_identity)
            VALUES (true, $1, $2, $3, $4)
            ON CONFLICT (singleton) DO UPDATE SET workspace_id = EXCLUDED.workspace_id, environment_id = EXCLUDED.environment_id,
                database_id = EXCLUDED.database_id, server_identity = EXCLUDED.server_identity, written_at = now()
            """, connection);
        write.Parameters.Add(new NpgsqlParameter { Value = ownership.WorkspaceId });
        write.Parameters.Add(new NpgsqlParameter { Value = ownership.EnvironmentId });
        write.Parameters.Add(new NpgsqlParameter { Value = ownership.DatabaseId });
        write.Parameters.Add(new NpgsqlParameter { Value = ownership.ServerIdentity });
        await write.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Creates (or repairs) the environment's two roles through the provisioning functions; their passwords travel as verifiers.</summary>
    private async Task EnsureRolesAsync(NpgsqlConnection connection, WorkspaceServer server, WorkspaceRoleSet roles, CancellationToken ct)
    {
        await EnsureProvisioningAsync(connection, server, ct);
        var settings = options.Value;
        // The role's statement_timeout is the largest execute timeout: an execution's SET LOCAL may only lower it.
        var limits = new PostgresProvisioning.RoleLimits(
            Math.Clamp(settings.Limits.Connections, 1, 1000),
            (int)Math.Clamp(Math.Max(WorkspacesOptions.WholeSeconds(settings.MaxExecuteTimeout),
                WorkspacesOptions.WholeSeconds(settings.OperationTimeout)) * 1000L, 1000, 86_400_000),
            Math.Clamp(settings.Limits.TempFileLimitKilobytes, 1024, 1_073_741_824),
            Math.Clamp(settings.Limits.WorkMemKilobytes, 64, 4_194_304));
        await PostgresProvisioning.CreateRoleAsync(connection, roles.OwnerRole, ScramVerifier.Compute(roles.OwnerPassword), limits, ct);
        await PostgresProvisioning.CreateRoleAsync(connection, roles.ExecuteRole, ScramVerifier.Compute(roles.ExecutePassword), limits, ct);
    }

    /// <summary>
    /// The provisioning functions must be there (the worker's bootstrap installs them). A superuser deploy credential
    /// installs them itself; any other is told to run the bootstrap.
    /// </summary>
    private static async Task EnsureProvisioningAsync(NpgsqlConnection connection, WorkspaceServer server, CancellationToken ct)
    {
        var state = await PostgresProvisioning.ReadStateAsync(connection, ct);
        if (state.InstalledVersion >= PostgresProvisioning.Version && (state.CanExecute || state.IsSuperuser)) return;
        if (state.IsSuperuser)
        {
            await PostgresProvisioning.InstallAsync(connection, grantee: null, ct);
            return;
        }
        throw new WorkspaceServerSetupException(state.InstalledVersion is null or < PostgresProvisioning.Version
            ? $"Server '{server.Name}' is not prepared for workspace roles: run the migration worker's 'workspaces bootstrap --server {server.Name}' "
              + "with the server's admin connection string once."
            : $"The deploy login of server '{server.Name}' ({state.CurrentUser}) may not execute the provisioning functions: "
                + "run the migration worker's "
              + $"'workspaces bootstrap --server {server.Name}' to grant them.");
    }

    public override async Task DropDatabaseAsync(WorkspaceServer server, string database, IReadOnlyList<string> roles,
        CancellationToken cancellationToken)
    {
        await using (var connection = AdminConnection(server))
        {
            await connection.OpenAsync(cancellationToken);
            // Refused (42501) unless the deploy credential owns it: through the environment's owner role.
            await ExecuteAsync(connection, $"DROP DATABASE IF EXISTS {Quote(database)} WITH (FORCE)", cancellationToken);
        }
        await DropRolesAsync(server, roles, cancellationToken);
    }

    public override async Task DropRolesAsync(WorkspaceServer server, IReadOnlyList<string> roles, CancellationToken cancellationToken)
    {
        if (roles.Count == 0) return;
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await EnsureProvisioningAsync(connection, server, cancellationToken);
        foreach (var role in roles)
        {
            try
            {
                await PostgresProvisioning.DropRoleAsync(connection, role, cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DependentObjectsStillExist)
            {
                // Granted something elsewhere by hand: it stays, harmless without its database and unknown to any environment.
            }
        }
    }

    private static WorkspaceRoleSet RolesOf(WorkspaceOwnership ownership) =>
        ownership.Roles ?? throw new InvalidOperationException("A PostgreSQL environment's claim carries its roles.");

    // ---- Base schema ----

    public override async Task<IReadOnlyList<AppliedWorkspaceMigration>> ReadAppliedMigrationsAsync(NpgsqlConnection npgsql,
        CancellationToken cancellationToken)
    {
        await using (var exists = new NpgsqlCommand("SELECT to_regclass('tcstudio.tcstudio_schema_migrations') IS NOT NULL", npgsql))
        {
            if (!(bool)(await exists.ExecuteScalarAsync(cancellationToken))!) return [];
        }
        await using var command = new NpgsqlCommand(
            "SELECT version, name, checksum, applied_at, duration_ms FROM tcstudio.tcstudio_schema_migrations ORDER BY version", npgsql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var applied = new List<AppliedWorkspaceMigration>();
        while (await reader.ReadAsync(cancellationToken))
        {
            applied.Add(new AppliedWorkspaceMigration(reader.GetInt32(0), reader.GetString(1), reader.GetString(2).Trim(),
                reader.GetFieldValue<DateTimeOffset>(3), reader.GetInt32(4)));
        }
        return applied;
    }

    public override async Task ApplyMigrationAsync(NpgsqlConnection npgsql, WorkspaceMigration migration, CancellationToken cancellationToken)
    {
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        var stopwatch = Stopwatch.StartNew();
        await ExecuteAsync(npgsql, migration.Up, cancellationToken);
        await using (var record = new NpgsqlCommand(
            "INSERT INTO tcstudio.tcstudio_schema_migrations (version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4)", npgsql))
        {
            record.Parameters.Add(new NpgsqlParameter { Value = migration.Version });
            record.Parameters.Add(new NpgsqlParameter { Value = migration.Name });
            record.Parameters.Add(new NpgsqlParameter { Value = migration.Checksum });
            record.Parameters.Add(new NpgsqlParameter { Value = (int)stopwatch.ElapsedMilliseconds });
            await record.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public override async Task RevertMigrationAsync(NpgsqlConnection npgsql, WorkspaceMigration migration, CancellationToken cancellationToken)
    {
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        await using (var forget = new NpgsqlCommand("DELETE FROM tcstudio.tcstudio_schema_migrations WHERE version = $1", npgsql))
        {
            forget.Parameters.Add(new NpgsqlParameter { Value = migration.Version });
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        await ExecuteAsync(npgsql, migration.Down, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    // ---- Validation ----

    public override SqlValidation ValidateStatically(string procedureName, string sql) => Check(procedureName, sql).Validation;

    /// <param name="Statement">The draft's statement as run: CREATE turned into CREATE OR REPLACE where needed.</param>
    /// <param name="Inserted">Where " OR REPLACE" was inserted into <paramref name="Statement"/> (-1: not), to map error positions back.</param>
    internal sealed record DraftShape(SqlValidation Validation, int StatementStart, string Statement, int Inserted, string? Schema)
    {
        public int OffsetInDraft(int position)
        {
            var offset = position - 1; // PostgreSQL positions are 1-based
            if (Inserted >= 0 && offset > Inserted) offset = Math.Max(Inserted, offset - OrReplace.Length);
            return StatementStart + Math.Max(0, offset);
        }

        /// <summary>Raw text as if it had passed the static check: how tests show what the server does on its own.</summary>
        internal static DraftShape Unchecked(string text, string procedureName) =>
            new(SqlValidation.Valid, 0, text, -1, ProcedureName.Parse(procedureName).Schema);
    }

    private const string OrReplace = " OR REPLACE";

    /// <summary>Schemas a draft may not create routines in: the service's own, and the server's.</summary>
    private static bool IsReservedSchema(string schema) =>
        schema.Equals(WorkspaceSchema, StringComparison.OrdinalIgnoreCase)
        || schema.Equals("information_schema", StringComparison.OrdinalIgnoreCase)
        || schema.StartsWith("pg_", StringComparison.OrdinalIgnoreCase);

    /// <summary>The schema of the service's own tables in every workspace database (migrations, deployments).</summary>
    public const string WorkspaceSchema = "tcstudio";

    private static DraftShape Check(string procedureName, string sql)
    {
        static DraftShape Invalid(SqlProblem problem) => new(new SqlValidation([problem]), 0, "", -1, null);

        var statements = Statements(sql, out var lexError);
        if (lexError is not null) return Invalid(lexError);
        if (statements.Count == 0) return Invalid(new SqlProblem(1, 1, "The draft is empty: expected CREATE [OR REPLACE] FUNCTION|PROCEDURE."));
        if (statements.Count > 1)
        {
            return Invalid(Problem(sql, statements[1][0].Start,
                $"The draft must hold exactly one statement (CREATE [OR REPLACE] FUNCTION|PROCEDURE); found {statements.Count}."));
        }

        var tokens = statements[0];
        var i = 0;
        bool Word(string word) => i < tokens.Count && tokens[i].Kind == TokenKind.Word
            && string.Equals(tokens[i].Text, word, StringComparison.OrdinalIgnoreCase);

        if (!Word("CREATE")) return Invalid(Problem(sql, tokens[0].Start, "Expected CREATE [OR REPLACE] FUNCTION|PROCEDURE."));
        var create = tokens[i];
        i++;
        var replaces = Word("OR");
        if (replaces)
        {
            i++;
            if (!Word("REPLACE")) return Invalid(Problem(sql, tokens[Math.Min(i, tokens.Count - 1)].Start, "Expected REPLACE after CREATE OR."));
            i++;
        }
        if (!Word("FUNCTION") && !Word("PROCEDURE"))
        {
            return Invalid(Problem(sql, tokens[Math.Min(i, tokens.Count - 1)].Start,
                "Only CREATE [OR REPLACE] FUNCTION or PROCEDURE may be published."));
        }
        var kind = tokens[i].Text.ToUpperInvariant();
        i++;
        var nameStart = i < tokens.Count ? tokens[i].Start : sql.Length;
        var parts = new List<string>();
        while (i < tokens.Count && tokens[i].Kind is TokenKind.Word or TokenKind.QuotedIdentifier)
        {
            parts.Add(Identifier(tokens[i]));
            i++;
            if (i < tokens.Count && tokens[i].Kind == TokenKind.Symbol && tokens[i].Text == ".") { i++; continue; }
            break;
        }
        if (parts.Count is 0 or > 2 || i >= tokens.Count || tokens[i].Text != "(")
        {
            return Invalid(Problem(sql, nameStart, $"Expected the {kind.ToLowerInvariant()}'s name and its parameter list."));
        }

        var expected = ProcedureName.Parse(procedureName);
        var schema = parts.Count == 2 ? parts[0] : null;
        var name = parts[^1];
        var schemaMatches = string.Equals(schema ?? DefaultSchema, expected.Schema ?? DefaultSchema, StringComparison.OrdinalIgnoreCase);
        if (!schemaMatches || !string.Equals(name, expected.Name, StringComparison.OrdinalIgnoreCase))
        {
            return Invalid(Problem(sql, nameStart,
                $"The {kind.ToLowerInvariant()} is named '{string.Join('.', parts)}' but the draft is '{procedureName}'; they must match."));
        }
        if (IsReservedSchema(expected.SchemaOr(DefaultSchema)))
        {
            return Invalid(Problem(sql, nameStart,
                $"Schema '{expected.Schema}' is reserved; choose another schema for the {kind.ToLowerInvariant()}."));
        }
        for (var k = i; k + 1 < tokens.Count; k++)
        {
            // The server checks the created routine too (CheckCreatedRoutine); this says it early and where.
            if (IsWord(tokens[k], "SECURITY") && IsWord(tokens[k + 1], "DEFINER"))
            {
                return Invalid(Problem(sql, tokens[k].Start, SecurityDefinerRefused));
            }
        }

        var last = tokens[^1];
        var statement = sql[tokens[0].Start..(last.Start + last.Length)];
        if (replaces) return new DraftShape(SqlValidation.Valid, tokens[0].Start, statement, -1, expected.Schema);
        // Deploys are CREATE OR REPLACE, so publishing a changed draft (or publishing twice) works.
        var at = create.Start - tokens[0].Start + create.Length;
        return new DraftShape(SqlValidation.Valid, tokens[0].Start, statement[..at] + OrReplace + statement[at..], at, expected.Schema);
    }

    private static bool IsWord(Token token, string word) =>
        token.Kind == TokenKind.Word && string.Equals(token.Text, word, StringComparison.OrdinalIgnoreCase);

    private const string SecurityDefinerRefused =
        "SECURITY DEFINER is not allowed: published routines run as the environment's execute role, never as its owner.";

    public override async Task<SqlValidation> ValidateAsync(NpgsqlConnection connection, string procedureName, string sql,
        CancellationToken cancellationToken)
    {
        var shape = Check(procedureName, sql);
        if (!shape.Validation.IsValid) return shape.Validation;
        return await ValidateOnServerAsync(connection, procedureName, sql, shape, cancellationToken);
    }

    /// <summary>
    /// The server's half of validation, below the static check: the draft runs in a transaction that is always
    /// rolled back, as one extended-protocol statement (so PostgreSQL itself refuses a second one, 42601), and the
    /// routine it created is checked in the catalog. The draft cannot end that transaction: one statement that is
    /// a CREATE FUNCTION|PROCEDURE has no way to, and a guard setting local to the transaction proves it did not.
    /// </summary>
    internal async Task<SqlValidation> ValidateOnServerAsync(NpgsqlConnection npgsql, string procedureName, string sql, DraftShape shape,
        CancellationToken cancellationToken)
    {
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        try
        {
            var guard = await BeginDraftWorkAsync(npgsql, cancellationToken);
            if (shape.Schema is { } schema && !schema.Equals(DefaultSchema, StringComparison.OrdinalIgnoreCase))
            {
                await ExecuteAsync(npgsql, $"CREATE SCHEMA IF NOT EXISTS {Quote(schema.ToLowerInvariant())}", cancellationToken);
            }
            var refusal = await CreateOrReplaceAsync(npgsql, shape, ProcedureName.Parse(procedureName), guard, cancellationToken);
            return refusal is null ? SqlValidation.Valid : new SqlValidation([Problem(sql, shape.StatementStart, refusal)]);
        }
        catch (PostgresException e) when (!WorkspaceFailures.IsConnectionFailure(e) && e.SqlState != PostgresErrorCodes.QueryCanceled)
        {
            var offset = e.Position > 0 ? shape.OffsetInDraft(e.Position) : shape.StatementStart;
            var message = $"{e.SqlState}: {e.MessageText}" + (e.Detail is { Length: > 0 } d ? $" ({d})" : "")
                + (e.Hint is { Length: > 0 } h ? $" Hint: {h}" : "");
            return new SqlValidation([Problem(sql, offset, WorkspaceFailures.Scrub(message, npgsql.UserName))]);
        }
        finally
        {
            await RollBackAsync(npgsql, transaction);
        }
    }

    /// <summary>Rolls back whatever state the transaction is in; never throws over the caller's own outcome.</summary>
    private static async Task RollBackAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        if (connection.State != System.Data.ConnectionState.Open) return;
        try
        {
            await transaction.RollbackAsync(CancellationToken.None);
        }
        catch (InvalidOperationException)
        {
            // Already completed (the guard check has refused the draft then): there is nothing left to roll back.
        }
    }

    private const string GuardSetting = "tcstudio.draft_guard";

    /// <summary>
    /// Transaction-local settings every draft runs under: a statement timeout, bodies checked, standard-conforming
    /// strings (what <see cref="PostgresSqlText"/> assumes: a backslash in '…' is an ordinary character), and a
    /// random guard value that disappears if the transaction ends. Returns the guard.
    /// </summary>
    private async Task<string> BeginDraftWorkAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        var guard = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"SET LOCAL statement_timeout = '{OperationTimeoutSeconds}s'"),
                new NpgsqlBatchCommand("SET LOCAL check_function_bodies = on"),
                new NpgsqlBatchCommand("SET LOCAL standard_conforming_strings = on"),
                new NpgsqlBatchCommand($"SELECT set_config('{GuardSetting}', $1, true)") { Parameters = { new NpgsqlParameter { Value = guard } } },
            },
        };
        await batch.ExecuteNonQueryAsync(ct);
        return guard;
    }

    /// <summary>
    /// Sends a draft's text to the server, after the service's own <paramref name="before"/> (if any) in the same
    /// round trip: each as one extended-protocol statement without parameters, which PostgreSQL parses as a whole
    /// and refuses (42601, "cannot insert multiple commands into a prepared statement") if it holds more than one.
    /// Never through NpgsqlCommand(text), which splits the text on ';' itself and would run every part.
    /// </summary>
    internal static async Task RunDraftStatementAsync(NpgsqlConnection connection, string statement, string? before, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(connection);
        if (before is not null) batch.BatchCommands.Add(new NpgsqlBatchCommand(before));
        batch.BatchCommands.Add(new NpgsqlBatchCommand(statement));
        await batch.ExecuteNonQueryAsync(ct);
    }

    /// <summary>What the statement must have done, read back from the catalog in the same transaction.</summary>
    private const string CreatedRoutineCheck = $"""
        SELECT coalesce(current_setting('{GuardSetting}', true) = $3, false),
               count(p.oid),
               coalesce(bool_or(p.prosecdef), false),
               coalesce(bool_or(EXISTS (SELECT 1 FROM unnest(p.proconfig) AS s(setting)
                                        WHERE lower(s.setting) LIKE 'role=%' OR lower(s.setting) LIKE 'session\_authorization=%')), false)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE lower(n.nspname) = lower($1) AND lower(p.proname) = lower($2) AND p.prokind IN ('f', 'p')
          -- written by this transaction or one of its subtransactions (their ids are newer than its own)
          AND age(p.xmin) <= age(pg_current_xact_id()::xid)
        """;

    /// <summary>
    /// Runs the draft's CREATE OR REPLACE (inside the caller's transaction), then checks what it did; returns why the
    /// result may not stand, or null. PostgreSQL cannot replace a routine whose return type or parameter names
    /// change: then the routines of that name are dropped and the draft runs again.
    /// </summary>
    private static async Task<string?> CreateOrReplaceAsync(NpgsqlConnection connection, DraftShape shape, ProcedureName name, string guard,
        CancellationToken ct)
    {
        try
        {
            await RunDraftStatementAsync(connection, shape.Statement, before: "SAVEPOINT tcstudio_create", ct);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.InvalidFunctionDefinition or PostgresErrorCodes.WrongObjectType)
        {
            await ExecuteAsync(connection, "ROLLBACK TO SAVEPOINT tcstudio_create", ct);
            await DropRoutinesAsync(connection, await RoutinesAsync(connection, name, ct), ct);
            await RunDraftStatementAsync(connection, shape.Statement, before: null, ct);
        }

        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(CreatedRoutineCheck)
                {
                    Parameters =
                    {
                        new NpgsqlParameter { Value = name.SchemaOr(DefaultSchema) },
                        new NpgsqlParameter { Value = name.Name },
                        new NpgsqlParameter { Value = guard },
                    },
                },
                new NpgsqlBatchCommand("RELEASE SAVEPOINT tcstudio_create"),
            },
        };
        bool sameTransaction, securityDefiner, switchesRole;
        long created;
        await using (var reader = await batch.ExecuteReaderAsync(ct))
        {
            await reader.ReadAsync(ct);
            (sameTransaction, created, securityDefiner, switchesRole) = (reader.GetBoolean(0), reader.GetInt64(1), reader.GetBoolean(2),
                reader.GetBoolean(3));
        }
        if (!sameTransaction) return "The draft ended the transaction it ran in; a draft must be exactly one CREATE [OR REPLACE] FUNCTION|PROCEDURE.";
        if (created == 0)
        {
            return $"The draft did not create or replace '{name}'; a draft must be exactly one CREATE [OR REPLACE] FUNCTION|PROCEDURE of it.";
        }
        if (securityDefiner) return SecurityDefinerRefused;
        if (switchesRole) return "SET role or session_authorization is not allowed on a published routine.";
        return null;
    }

    // ---- Deploy, undeploy, drop ----

    public override async Task<IAsyncDisposable> LockAsync(NpgsqlConnection npgsql, string resource, CancellationToken cancellationToken)
    {
        await using (var command = new NpgsqlCommand("SELECT pg_advisory_lock(hashtextextended('tcstudio.' || lower($1), 0))", npgsql))
        {
            command.CommandTimeout = OperationTimeoutSeconds;
            command.Parameters.Add(new NpgsqlParameter { Value = resource });
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        return new AdvisoryLock(npgsql, resource);
    }

    private sealed class AdvisoryLock(NpgsqlConnection connection, string resource) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            if (connection.State != System.Data.ConnectionState.Open) return; // a closed session holds no lock
            await using var command = new NpgsqlCommand("SELECT pg_advisory_unlock(hashtextextended('tcstudio.' || lower($1), 0))", connection);
            command.Parameters.Add(new NpgsqlParameter { Value = resource });
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    private const string RoutinesNamed = """
        SELECT p.oid::regprocedure::text, p.prokind::text, pg_get_functiondef(p.oid),
               -- written by this transaction or one of its subtransactions (their ids are newer than its own)
               age(p.xmin) <= age(pg_current_xact_id()::xid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE lower(n.nspname) = lower($1) AND lower(p.proname) = lower($2) AND p.prokind IN ('f', 'p')
        ORDER BY p.oid
        """;

    private sealed record Routine(string Signature, string Kind, string Definition, bool ChangedNow);

    private static async Task<List<Routine>> RoutinesAsync(NpgsqlConnection connection, ProcedureName name, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(RoutinesNamed, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = name.SchemaOr(DefaultSchema) });
        command.Parameters.Add(new NpgsqlParameter { Value = name.Name });
        await using var reader = await command.ExecuteReaderAsync(ct);
        var routines = new List<Routine>();
        while (await reader.ReadAsync(ct))
        {
            routines.Add(new Routine(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetBoolean(3)));
        }
        return routines;
    }

    private static async Task DropRoutinesAsync(NpgsqlConnection connection, IEnumerable<Routine> routines, CancellationToken ct)
    {
        // Signatures come from the catalog (regprocedure output is already quoted as needed).
        await using var batch = new NpgsqlBatch(connection);
        foreach (var routine in routines)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand($"DROP {(routine.Kind == "p" ? "PROCEDURE" : "FUNCTION")} {routine.Signature}"));
        }
        if (batch.BatchCommands.Count > 0) await batch.ExecuteNonQueryAsync(ct);
    }

    public override async Task<ProcedureDeployment> DeployAsync(NpgsqlConnection connection, string procedureName, string sql, string deployedBy,
        CancellationToken cancellationToken)
    {
        var shape = Check(procedureName, sql);
        if (!shape.Validation.IsValid) throw new InvalidOperationException("Deploy called with a draft that does not validate.");
        return await DeployOnServerAsync(connection, procedureName, sql, shape, deployedBy, cancellationToken);
    }

    /// <summary>
    /// The deploy below the static check: the draft runs as one extended-protocol statement in a transaction that
    /// commits only when the catalog shows the named routine created (not SECURITY DEFINER) in that same transaction;
    /// otherwise a <see cref="DraftRefusedException"/> and nothing is kept.
    /// </summary>
    internal async Task<ProcedureDeployment> DeployOnServerAsync(NpgsqlConnection npgsql, string procedureName, string sql, DraftShape shape,
        string deployedBy, CancellationToken cancellationToken)
    {
        var name = ProcedureName.Parse(procedureName);
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        var guard = await BeginDraftWorkAsync(npgsql, cancellationToken);
        var previous = await RoutinesAsync(npgsql, name, cancellationToken);
        if (name.Schema is { } schema && !schema.Equals(DefaultSchema, StringComparison.OrdinalIgnoreCase))
        {
            await GrantSchemaToExecuteRoleAsync(npgsql, schema, cancellationToken);
        }
        if (await CreateOrReplaceAsync(npgsql, shape, name, guard, cancellationToken) is { } refusal)
        {
            throw new DraftRefusedException(new SqlValidation([Problem(sql, shape.StatementStart, refusal)]));
        }

        // One name, one routine: a changed signature would otherwise leave the old overload behind.
        var now = await RoutinesAsync(npgsql, name, cancellationToken);
        await DropRoutinesAsync(npgsql, now.Where(r => !r.ChangedNow), cancellationToken);

        var previousDefinition = previous.Count == 0 ? null : string.Join(";\n\n", previous.Select(r => r.Definition)) + ";";
        await using var record = new NpgsqlCommand("""
            INSERT INTO tcstudio.procedure_deployments (procedure, checksum, deployed_by, previous_definition)
            VALUES ($1, $2, $3, $4) RETURNING id, deployed_at
            """, npgsql);
        record.Parameters.Add(new NpgsqlParameter { Value = procedureName });
        record.Parameters.Add(new NpgsqlParameter { Value = Checksums.Of(sql) });
        record.Parameters.Add(new NpgsqlParameter { Value = deployedBy });
        record.Parameters.Add(new NpgsqlParameter { Value = (object?)previousDefinition ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        long id;
        DateTimeOffset deployedAt;
        await using (var reader = await record.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            id = reader.GetInt64(0);
            deployedAt = reader.GetFieldValue<DateTimeOffset>(1);
        }
        await transaction.CommitAsync(cancellationToken);
        return new ProcedureDeployment(id, procedureName, Checksums.Of(sql), deployedAt, deployedBy, previousDefinition)
        {
            PreviousStatements = previous.Select(r => r.Definition).ToList(),
        };
    }

    /// <summary>A schema other than public that a deploy creates is usable by the execute role (and nothing more).</summary>
    private static Task GrantSchemaToExecuteRoleAsync(NpgsqlConnection npgsql, string schema, CancellationToken ct)
    {
        var exec = Quote(PostgresWorkspaceRoles.Execute(npgsql));
        var quoted = Quote(schema.ToLowerInvariant());
        return ExecuteAsync(npgsql, $"""
            CREATE SCHEMA IF NOT EXISTS {quoted};
            GRANT USAGE ON SCHEMA {quoted} TO {exec};
            ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {exec};
            ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT USAGE, SELECT ON SEQUENCES TO {exec};
            """, ct);
    }

    public override async Task UndeployAsync(NpgsqlConnection npgsql, string procedureName, ProcedureDeployment deployment,
        CancellationToken cancellationToken)
    {
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        await BeginDraftWorkAsync(npgsql, cancellationToken);
        await DropRoutinesAsync(npgsql, await RoutinesAsync(npgsql, ProcedureName.Parse(procedureName), cancellationToken), cancellationToken);
        // The previous definitions are pg_get_functiondef's output, each still sent as one statement of its own.
        var definitions = deployment.PreviousStatements
            ?? (deployment.PreviousDefinition is { } joined ? Statements(joined, out _).Select(s => joined[s[0].Start..(s[^1].Start + s[^1].Length)])
                .ToList() : []);
        foreach (var definition in definitions)
        {
            await RunDraftStatementAsync(npgsql, definition, before: null, cancellationToken);
        }
        await using (var forget = new NpgsqlCommand("DELETE FROM tcstudio.procedure_deployments WHERE id = $1", npgsql))
        {
            forget.Parameters.Add(new NpgsqlParameter { Value = deployment.Id });
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public override async Task<bool> DropAsync(NpgsqlConnection npgsql, string procedureName, CancellationToken cancellationToken)
    {
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        var routines = await RoutinesAsync(npgsql, ProcedureName.Parse(procedureName), cancellationToken);
        await DropRoutinesAsync(npgsql, routines, cancellationToken);
        if (await HasDeploymentsTableAsync(npgsql, cancellationToken))
        {
            await using var forget = new NpgsqlCommand("DELETE FROM tcstudio.procedure_deployments WHERE lower(procedure) = lower($1)", npgsql);
            forget.Parameters.Add(new NpgsqlParameter { Value = procedureName });
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return routines.Count > 0;
    }

    public override async Task<ProcedureDeployment?> ReadDeploymentAsync(NpgsqlConnection npgsql, string procedureName,
        CancellationToken cancellationToken)
    {
        if (!await HasDeploymentsTableAsync(npgsql, cancellationToken)) return null;
        await using var command = new NpgsqlCommand("""
            SELECT id, procedure, checksum, deployed_at, deployed_by, previous_definition FROM tcstudio.procedure_deployments
            WHERE lower(procedure) = lower($1) ORDER BY id DESC LIMIT 1
            """, npgsql);
        command.Parameters.Add(new NpgsqlParameter { Value = procedureName });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken)) return null;
        return new ProcedureDeployment(reader.GetInt64(0), reader.GetString(1), reader.GetString(2).Trim(), reader.GetFieldValue<DateTimeOffset>(3),
            reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5));
    }

    private static async Task<bool> HasDeploymentsTableAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT to_regclass('tcstudio.procedure_deployments') IS NOT NULL", connection);
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    // ---- Execute ----

    public override Task<ExecutionResult> ExecuteAsync(NpgsqlConnection connection, string procedureName,
        IReadOnlyDictionary<string, JsonElement> parameters, ExecutionLimits limits, string environment, CancellationToken cancellationToken) =>
        PostgresRoutineExecutor.ExecuteAsync(connection, procedureName, parameters, limits, environment, cancellationToken);

    /// <summary>SQL the service writes itself (Npgsql may split it on ';'); never a draft: see <see cref="RunDraftStatementAsync"/>.</summary>
    internal static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }
}
