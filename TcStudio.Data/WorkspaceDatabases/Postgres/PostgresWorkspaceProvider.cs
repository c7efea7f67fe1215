using System.Data.Common;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using TcStudio.Data.Entities;
using static TcStudio.Data.WorkspaceDatabases.Postgres.PostgresSqlText;

namespace TcStudio.Data.WorkspaceDatabases.Postgres;

/// <summary>
/// PostgreSQL workspace databases (Npgsql). Drafts are CREATE [OR REPLACE] FUNCTION|PROCEDURE statements.
/// <list type="bullet">
/// <item>Validation: the draft must be exactly one such statement naming the draft's routine (checked by
/// <see cref="PostgresSqlText"/> without a server); then it runs as the database's owner role in a transaction that
/// is rolled back, with check_function_bodies on, so PL/pgSQL and SQL bodies are parsed by the server itself.</item>
/// <item>Deploy: in one transaction, as the owner role: the previous definitions (pg_get_functiondef) are captured,
/// the draft runs, other overloads of the same name are dropped (one name, one routine: like CREATE OR ALTER) and
/// the deployment is recorded in tcstudio.procedure_deployments.</item>
/// <item>Execute (as the exec role, in one transaction that commits): procedures by CALL, their OUT/INOUT values
/// as outputParameters; functions by SELECT * FROM f(...), their rows as a result set. Multiple result sets come
/// from refcursors: a procedure's refcursor OUT/INOUT parameters, or a function returning refcursor or SETOF
/// refcursor; each cursor is fetched (up to the row cap) as one result set, in order. Routines that COMMIT or
/// ROLLBACK themselves cannot be executed this way (they would need to run outside a transaction block).</item>
/// </list>
/// </summary>
public sealed class PostgresWorkspaceProvider(IOptions<WorkspacesOptions> options) : IWorkspaceDatabaseProvider
{
    public const string DefaultSchema = "public";

    public string Name => WorkspaceProviders.Postgres;
    public IReadOnlyList<WorkspaceMigration> Migrations => WorkspaceMigrations.For(WorkspaceProviders.Postgres);
    public int MaxDatabaseNameLength => 63;

    private int OperationTimeoutSeconds => options.Value.OperationTimeoutSeconds;

    public IWorkspaceConnectionSource CreateConnectionSource(WorkspaceServer server, string database, string applicationName,
        WorkspacesOptions settings) => new PostgresConnectionSource(server, database, applicationName, settings);

    public async Task PingAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT 1", (NpgsqlConnection)connection);
        command.CommandTimeout = Math.Max(1, options.Value.ConnectTimeoutSeconds);
        await command.ExecuteScalarAsync(cancellationToken);
    }

    // ---- Server-level work (deploy credential, unpooled) ----

    private NpgsqlConnection AdminConnection(WorkspaceServer server, string? database = null)
    {
        var builder = new NpgsqlConnectionStringBuilder(server.ConnectionString)
        {
            Pooling = false,
            ApplicationName = "tcstudio-workspace-admin",
            Timeout = Math.Max(1, options.Value.ConnectTimeoutSeconds),
            CommandTimeout = OperationTimeoutSeconds,
        };
        if (database is not null) builder.Database = database;
        else if (string.IsNullOrEmpty(builder.Database)) builder.Database = "postgres";
        return Telemetry.NpgsqlDataSources.CreateUnpooledConnection(Telemetry.NpgsqlDataSources.WorkspaceAdmin, builder);
    }

    public async Task<bool> DatabaseExistsAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = database });
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public async Task CreateDatabaseAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        var owner = await EnsureRolesAsync(connection, server, database, cancellationToken);
        // Owned by the workspace's own role: it then owns the public schema too (pg_database_owner).
        await ExecuteAsync(connection, $"CREATE DATABASE {Quote(database)} OWNER {Quote(owner)}", cancellationToken);
    }

    public async Task PrepareDatabaseAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        string owner, exec;
        await using (var connection = AdminConnection(server))
        {
            await connection.OpenAsync(cancellationToken);
            owner = await EnsureRolesAsync(connection, server, database, cancellationToken);
            exec = PostgresWorkspaceRoles.Execute(database);
            // Nobody but the workspace's roles (and the operator's) may connect: the roles of other workspaces on
            // this server cannot reach this database, nor these roles theirs.
            await ExecuteAsync(connection, $"""
                REVOKE ALL ON DATABASE {Quote(database)} FROM PUBLIC;
                GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {Quote(database)} TO {Quote(owner)};
                GRANT CONNECT, TEMPORARY ON DATABASE {Quote(database)} TO {Quote(exec)};
                """, cancellationToken);
        }

        await using (var connection = AdminConnection(server, database))
        {
            await connection.OpenAsync(cancellationToken);
            await ExecuteAsync(connection, $"""
                GRANT USAGE, CREATE ON SCHEMA public TO {Quote(owner)};
                GRANT USAGE ON SCHEMA public TO {Quote(exec)};
                ALTER DEFAULT PRIVILEGES FOR ROLE {Quote(owner)} IN SCHEMA public GRANT EXECUTE ON ROUTINES TO {Quote(exec)};
                ALTER DEFAULT PRIVILEGES FOR ROLE {Quote(owner)} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {Quote(exec)};
                ALTER DEFAULT PRIVILEGES FOR ROLE {Quote(owner)} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {Quote(exec)};
                """, cancellationToken);
        }
    }

    /// <summary>Creates or repairs the database's owner and exec roles; returns the owner's name.</summary>
    private async Task<string> EnsureRolesAsync(NpgsqlConnection admin, WorkspaceServer server, string database, CancellationToken ct)
    {
        var owner = PostgresWorkspaceRoles.Owner(database);
        var exec = PostgresWorkspaceRoles.Execute(database);
        foreach (var (role, purpose) in new[] { (owner, "owner"), (exec, "execute") })
        {
            var password = PostgresWorkspaceRoles.Password(role, server, options.Value.RoleSecret);
            const string Limits = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT";
            try
            {
                await ExecuteAsync(admin, $"CREATE ROLE {Quote(role)} {Limits} PASSWORD {Literal(password)}", ct);
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.DuplicateObject or PostgresErrorCodes.UniqueViolation)
            {
                // It exists: the ALTER below puts its attributes and password back to what they must be.
            }
            await ExecuteAsync(admin, $"""
                ALTER ROLE {Quote(role)} WITH {Limits} PASSWORD {Literal(password)};
                COMMENT ON ROLE {Quote(role)} IS {Literal($"TC Studio workspace database {database}: {purpose} role")};
                """, ct);
        }

        await using var isSuperuser = new NpgsqlCommand("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", admin);
        if (!(bool)(await isSuperuser.ExecuteScalarAsync(ct))!)
        {
            // A CREATEROLE operator must be a member to create a database owned by the role and set its default privileges.
            await ExecuteAsync(admin, $"GRANT {Quote(owner)} TO CURRENT_USER", ct);
        }
        return owner;
    }

    public async Task DropDatabaseAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await ExecuteAsync(connection, $"DROP DATABASE IF EXISTS {Quote(database)} WITH (FORCE)", cancellationToken);
        try
        {
            await ExecuteAsync(connection, $"DROP ROLE IF EXISTS {Quote(PostgresWorkspaceRoles.Execute(database))}, {Quote(PostgresWorkspaceRoles.Owner(database))}",
                cancellationToken);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DependentObjectsStillExist)
        {
            // The roles were granted something elsewhere by hand; they stay, harmless without their database.
        }
    }

    // ---- Base schema ----

    public async Task<IReadOnlyList<AppliedWorkspaceMigration>> ReadAppliedMigrationsAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
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

    public async Task ApplyMigrationAsync(DbConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
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

    public async Task RevertMigrationAsync(DbConnection connection, WorkspaceMigration migration, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
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

    public SqlValidation ValidateStatically(string procedureName, string sql) => Check(procedureName, sql).Validation;

    /// <param name="Statement">The draft's statement as run: CREATE turned into CREATE OR REPLACE where needed.</param>
    /// <param name="Inserted">Where " OR REPLACE" was inserted into <paramref name="Statement"/> (-1: not), to map error positions back.</param>
    private sealed record DraftShape(SqlValidation Validation, int StatementStart, string Statement, int Inserted, string? Schema)
    {
        public int OffsetInDraft(int position)
        {
            var offset = position - 1; // PostgreSQL positions are 1-based
            if (Inserted >= 0 && offset > Inserted) offset = Math.Max(Inserted, offset - OrReplace.Length);
            return StatementStart + Math.Max(0, offset);
        }
    }

    private const string OrReplace = " OR REPLACE";

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

        var last = tokens[^1];
        var statement = sql[tokens[0].Start..(last.Start + last.Length)];
        if (replaces) return new DraftShape(SqlValidation.Valid, tokens[0].Start, statement, -1, expected.Schema);
        // Deploys are CREATE OR REPLACE, so publishing a changed draft (or publishing twice) works.
        var at = create.Start - tokens[0].Start + create.Length;
        return new DraftShape(SqlValidation.Valid, tokens[0].Start, statement[..at] + OrReplace + statement[at..], at, expected.Schema);
    }

    public async Task<SqlValidation> ValidateAsync(DbConnection connection, string procedureName, string sql, CancellationToken cancellationToken)
    {
        var shape = Check(procedureName, sql);
        if (!shape.Validation.IsValid) return shape.Validation;

        var npgsql = (NpgsqlConnection)connection;
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        try
        {
            await ExecuteAsync(npgsql, $"SET LOCAL statement_timeout = '{OperationTimeoutSeconds}s'; SET LOCAL check_function_bodies = on", cancellationToken);
            if (shape.Schema is { } schema && !schema.Equals(DefaultSchema, StringComparison.OrdinalIgnoreCase))
            {
                await ExecuteAsync(npgsql, $"CREATE SCHEMA IF NOT EXISTS {Quote(schema.ToLowerInvariant())}", cancellationToken);
            }
            await CreateOrReplaceAsync(npgsql, shape, ProcedureName.Parse(procedureName), cancellationToken);
            return SqlValidation.Valid;
        }
        catch (PostgresException e) when (!WorkspaceFailures.IsConnectionFailure(e) && e.SqlState != PostgresErrorCodes.QueryCanceled)
        {
            var offset = e.Position > 0 ? shape.OffsetInDraft(e.Position) : shape.StatementStart;
            var message = $"{e.SqlState}: {e.MessageText}" + (e.Detail is { Length: > 0 } d ? $" ({d})" : "") + (e.Hint is { Length: > 0 } h ? $" Hint: {h}" : "");
            return new SqlValidation([Problem(sql, offset, message)]);
        }
        finally
        {
            if (npgsql.State == System.Data.ConnectionState.Open) await transaction.RollbackAsync(CancellationToken.None);
        }
    }

    // ---- Deploy, undeploy, drop ----

    public async Task<IAsyncDisposable> LockAsync(DbConnection connection, string resource, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
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

    private static Task DropRoutinesAsync(NpgsqlConnection connection, IEnumerable<Routine> routines, CancellationToken ct)
    {
        // Signatures come from the catalog (regprocedure output is already quoted as needed).
        var sql = string.Join(";\n", routines.Select(r => $"DROP {(r.Kind == "p" ? "PROCEDURE" : "FUNCTION")} {r.Signature}"));
        return sql.Length == 0 ? Task.CompletedTask : ExecuteAsync(connection, sql, ct);
    }

    public async Task<ProcedureDeployment> DeployAsync(DbConnection connection, string procedureName, string sql, string deployedBy,
        CancellationToken cancellationToken)
    {
        var shape = Check(procedureName, sql);
        if (!shape.Validation.IsValid) throw new InvalidOperationException("Deploy called with a draft that does not validate.");
        var name = ProcedureName.Parse(procedureName);
        var npgsql = (NpgsqlConnection)connection;

        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        await ExecuteAsync(npgsql, $"SET LOCAL statement_timeout = '{OperationTimeoutSeconds}s'", cancellationToken);
        var previous = await RoutinesAsync(npgsql, name, cancellationToken);
        if (name.Schema is { } schema && !schema.Equals(DefaultSchema, StringComparison.OrdinalIgnoreCase))
        {
            var exec = PostgresWorkspaceRoles.Execute(npgsql.Database);
            var quoted = Quote(schema.ToLowerInvariant());
            await ExecuteAsync(npgsql, $"""
                CREATE SCHEMA IF NOT EXISTS {quoted};
                GRANT USAGE ON SCHEMA {quoted} TO {Quote(exec)};
                ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {Quote(exec)};
                ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT USAGE, SELECT ON SEQUENCES TO {Quote(exec)};
                """, cancellationToken);
        }
        await CreateOrReplaceAsync(npgsql, shape, name, cancellationToken);

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
        return new ProcedureDeployment(id, procedureName, Checksums.Of(sql), deployedAt, deployedBy, previousDefinition);
    }

    /// <summary>
    /// Runs the draft's CREATE OR REPLACE. PostgreSQL cannot replace a routine whose return type or parameter names
    /// change; then the routines of that name are dropped and it is created afresh (inside the caller's transaction).
    /// </summary>
    private static async Task CreateOrReplaceAsync(NpgsqlConnection connection, DraftShape shape, ProcedureName name, CancellationToken ct)
    {
        await ExecuteAsync(connection, "SAVEPOINT tcstudio_create", ct);
        try
        {
            await ExecuteAsync(connection, shape.Statement, ct);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.InvalidFunctionDefinition or PostgresErrorCodes.WrongObjectType)
        {
            await ExecuteAsync(connection, "ROLLBACK TO SAVEPOINT tcstudio_create", ct);
            await DropRoutinesAsync(connection, await RoutinesAsync(connection, name, ct), ct);
            await ExecuteAsync(connection, shape.Statement, ct);
        }
        await ExecuteAsync(connection, "RELEASE SAVEPOINT tcstudio_create", ct);
    }

    public async Task UndeployAsync(DbConnection connection, string procedureName, ProcedureDeployment deployment, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        await DropRoutinesAsync(npgsql, await RoutinesAsync(npgsql, ProcedureName.Parse(procedureName), cancellationToken), cancellationToken);
        if (deployment.PreviousDefinition is { } previous) await ExecuteAsync(npgsql, previous, cancellationToken);
        await using (var forget = new NpgsqlCommand("DELETE FROM tcstudio.procedure_deployments WHERE id = $1", npgsql))
        {
            forget.Parameters.Add(new NpgsqlParameter { Value = deployment.Id });
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<bool> DropAsync(DbConnection connection, string procedureName, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
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

    public async Task<ProcedureDeployment?> ReadDeploymentAsync(DbConnection connection, string procedureName, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
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

    public Task<ExecutionResult> ExecuteAsync(DbConnection connection, string procedureName,
        IReadOnlyDictionary<string, JsonElement> parameters, ExecutionLimits limits, string environment, CancellationToken cancellationToken) =>
        PostgresRoutineExecutor.ExecuteAsync((NpgsqlConnection)connection, procedureName, parameters, limits, environment, cancellationToken);

    internal static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }
}
