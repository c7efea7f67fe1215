using System.Data;
using System.Data.Common;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Data.SqlClient;
using Microsoft.Extensions.Options;
using TcStudio.SystemDatabase.Entities;

namespace TcStudio.WorkspaceDatabases.SqlServer;

/// <summary>
/// SQL Server workspace databases (Microsoft.Data.SqlClient). Drafts are T-SQL CREATE [OR ALTER] PROCEDURE
/// statements, checked by <see cref="TSqlDraftValidator"/> (ScriptDom); every text this provider sends itself is in
/// <see cref="SqlServerSql"/>. Deploys run CREATE OR ALTER and record the deployment in one transaction (T-SQL DDL is
/// transactional). Execution reads the procedure's parameters (typed from sys.parameters, defaults read from its own
/// definition with ScriptDom) on a fresh, unpooled session, then enters the database's own execute user
/// (<see cref="SqlServerSql.EnterExecuteUser"/>: a user WITHOUT LOGIN with EXECUTE on the procedures' schemas only,
/// entered WITH NO REVERT) and only then runs the procedure: no user code ever runs with the deploy login's rights.
/// </summary>
public sealed class SqlServerWorkspaceProvider(IOptions<WorkspacesOptions> options) : WorkspaceDatabaseProvider<SqlConnection>
{
    public override string Name => WorkspaceProviders.SqlServer;
    public override IReadOnlyList<WorkspaceMigration> Migrations => WorkspaceMigrations.For(WorkspaceProviders.SqlServer);
    public override int MaxDatabaseNameLength => 128;

    private int OperationTimeoutSeconds => WorkspacesOptions.WholeSeconds(options.Value.OperationTimeout);

    public override IWorkspaceConnectionSource CreateConnectionSource(WorkspaceServer server, WorkspaceTarget target, WorkspaceOwnership ownership,
        string applicationName, WorkspacesOptions settings) => new SqlServerConnectionSource(server, target, ownership, applicationName, settings);

    public override async Task PingAsync(SqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, SqlServerSql.Ping);
        command.CommandTimeout = WorkspacesOptions.WholeSeconds(options.Value.ConnectTimeout);
        await command.ExecuteScalarAsync(cancellationToken);
    }

    // ---- Server-level work ----

    private SqlConnection AdminConnection(WorkspaceServer server, string database = "master") =>
        new(new SqlConnectionStringBuilder(server.ConnectionString)
        {
            InitialCatalog = database,
            Pooling = false,
            ApplicationName = "tcstudio-workspace-admin",
            ConnectTimeout = WorkspacesOptions.WholeSeconds(options.Value.ConnectTimeout),
            CommandTimeout = OperationTimeoutSeconds,
        }.ConnectionString);

    public override async Task<bool> DatabaseExistsAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await using var command = Command(connection, SqlServerSql.DatabaseExists, ("@database", database));
        return Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture) == 1;
    }

    public override async Task<string?> DatabaseOwnerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await using var command = Command(connection, SqlServerSql.DatabaseOwner, ("@database", database));
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public override async Task CreateDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership,
        CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await using var command = Command(connection, SqlServerSql.CreateDatabase(database));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public override async Task PrepareDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, bool writeMarker,
        CancellationToken cancellationToken)
    {
        if (writeMarker) await WriteMarkerAsync(server, database, ownership, cancellationToken);
        await using var connection = AdminConnection(server, database);
        await connection.OpenAsync(cancellationToken);
        await using var command = Command(connection, SqlServerSql.EnsureExecuteUser);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>SQL Server environments have no roles of their own: taking a database over is writing its marker (as dbo).</summary>
    public override Task TakeOverDatabaseAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership,
        IReadOnlyList<string> previousRoles,
        CancellationToken cancellationToken) =>
        PrepareDatabaseAsync(server, database, ownership, writeMarker: true, cancellationToken);

    private async Task WriteMarkerAsync(WorkspaceServer server, string database, WorkspaceOwnership ownership, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server, database);
        await connection.OpenAsync(cancellationToken);
        await using var command = Command(connection, SqlServerSql.WriteMarker, ("@workspace_id", ownership.WorkspaceId),
            ("@environment_id", ownership.EnvironmentId), ("@database_id", ownership.DatabaseId), ("@server_identity", ownership.ServerIdentity));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public override async Task<WorkspaceMarker?> ReadMarkerAsync(WorkspaceServer server, string database, CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server, database);
        await connection.OpenAsync(cancellationToken);
        return await ReadMarkerAsync(connection, cancellationToken);
    }

    internal static async Task<WorkspaceMarker?> ReadMarkerAsync(SqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, SqlServerSql.ReadMarker);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (reader.FieldCount == 0 || !await reader.ReadAsync(cancellationToken)) return null;
        return new WorkspaceMarker(reader.GetGuid(0), reader.GetGuid(1), reader.GetGuid(2));
    }

    public override async Task DropDatabaseAsync(WorkspaceServer server, string database, IReadOnlyList<string> roles,
        CancellationToken cancellationToken)
    {
        await using var connection = AdminConnection(server);
        await connection.OpenAsync(cancellationToken);
        await using var command = Command(connection, SqlServerSql.DropDatabase(database), ("@database", database));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public override Task DropRolesAsync(WorkspaceServer server, IReadOnlyList<string> roles, CancellationToken cancellationToken)
        => Task.CompletedTask;

    // ---- Base schema ----

    public override async Task<IReadOnlyList<AppliedWorkspaceMigration>> ReadAppliedMigrationsAsync(SqlConnection sql,
        CancellationToken cancellationToken)
    {
        await using (var exists = Command(sql, SqlServerSql.HistoryExists))
        {
            if (Convert.ToInt32(await exists.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture) == 0) return [];
        }
        await using var command = Command(sql, SqlServerSql.ReadHistory);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var applied = new List<AppliedWorkspaceMigration>();
        while (await reader.ReadAsync(cancellationToken))
        {
            applied.Add(new AppliedWorkspaceMigration(reader.GetInt32(0), reader.GetString(1), reader.GetString(2).Trim(),
                reader.GetDateTimeOffset(3), reader.GetInt32(4)));
        }
        return applied;
    }

    public override async Task ApplyMigrationAsync(SqlConnection sql, WorkspaceMigration migration, CancellationToken cancellationToken)
    {
        await using var transaction = (SqlTransaction)await sql.BeginTransactionAsync(cancellationToken);
        var stopwatch = Stopwatch.StartNew();
        foreach (var batch in SqlServerSql.Batches(migration.Up))
        {
            await using var step = Command(sql, batch, transaction);
            await step.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var record = Command(sql, SqlServerSql.RecordMigration, transaction, ("@version", migration.Version),
            ("@name", migration.Name), ("@checksum", migration.Checksum), ("@duration_ms", (int)stopwatch.ElapsedMilliseconds)))
        {
            await record.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public override async Task RevertMigrationAsync(SqlConnection sql, WorkspaceMigration migration, CancellationToken cancellationToken)
    {
        await using var transaction = (SqlTransaction)await sql.BeginTransactionAsync(cancellationToken);
        await using (var forget = Command(sql, SqlServerSql.ForgetMigration, transaction, ("@version", migration.Version)))
        {
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        foreach (var batch in SqlServerSql.Batches(migration.Down))
        {
            await using var step = Command(sql, batch, transaction);
            await step.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    // ---- Validation ----

    public override SqlValidation ValidateStatically(string procedureName, string sql) => TSqlDraftValidator.Check(procedureName, sql).Validation;

    public override async Task<SqlValidation> ValidateAsync(SqlConnection sqlConnection, string procedureName, string sql,
        CancellationToken cancellationToken)
    {
        var check = TSqlDraftValidator.Check(procedureName, sql);
        if (!check.Validation.IsValid) return check.Validation;

        // The server compiles it too (objects that exist are bound), inside a transaction that is rolled back.
        await using var transaction = (SqlTransaction)await sqlConnection.BeginTransactionAsync(cancellationToken);
        try
        {
            await using var command = Command(sqlConnection, check.DeployText!, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
            return SqlValidation.Valid;
        }
        catch (SqlException e) when (!WorkspaceFailures.IsConnectionFailure(e))
        {
            var line = (check.Procedure?.StartLine ?? 1) - 1;
            return new SqlValidation(e.Errors.Cast<SqlError>()
                .Select(error => new SqlProblem(line + Math.Max(1, error.LineNumber), 1, $"{error.Number}: {error.Message}")).ToList());
        }
        finally
        {
            if (transaction.Connection is not null) await transaction.RollbackAsync(CancellationToken.None);
        }
    }

    // ---- Deploy, undeploy, drop ----

    public override async Task<IAsyncDisposable> LockAsync(SqlConnection sql, string resource, CancellationToken cancellationToken)
    {
        var name = "tcstudio." + resource.ToLowerInvariant();
        await using var command = Command(sql, SqlServerSql.LockProcedure, ("@resource", name), ("@timeout_ms", OperationTimeoutSeconds * 1000));
        var result = Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
        if (result < 0) throw new TimeoutException($"'{resource}' stayed locked by another session for too long (sp_getapplock returned {result}).");
        return new AppLock(sql, name);
    }

    private sealed class AppLock(SqlConnection connection, string resource) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            if (connection.State != ConnectionState.Open) return;
            await using var command = Command(connection, SqlServerSql.UnlockProcedure, ("@resource", resource));
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    public override async Task<ProcedureDeployment> DeployAsync(SqlConnection sqlConnection, string procedureName, string sql, string deployedBy,
        CancellationToken cancellationToken)
    {
        var check = TSqlDraftValidator.Check(procedureName, sql);
        if (!check.Validation.IsValid) throw new InvalidOperationException("Deploy called with a draft that does not validate.");
        var qualified = QualifiedName(procedureName);

        await using var transaction = (SqlTransaction)await sqlConnection.BeginTransactionAsync(IsolationLevel.Serializable, cancellationToken);
        string? previous;
        await using (var read = Command(sqlConnection, SqlServerSql.CurrentDefinition, transaction, ("@name", qualified)))
        {
            previous = await read.ExecuteScalarAsync(cancellationToken) as string;
        }
        await using (var deploy = Command(sqlConnection, check.DeployText!, transaction))
        {
            await deploy.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var grant = Command(sqlConnection,
            SqlServerSql.GrantExecuteOnSchema(ProcedureName.Parse(procedureName).SchemaOr(TSqlDraftValidator.DefaultSchema)), transaction))
        {
            await grant.ExecuteNonQueryAsync(cancellationToken);
        }
        var checksum = Checksums.Of(sql);
        long id;
        DateTimeOffset deployedAt;
        await using (var record = Command(sqlConnection, SqlServerSql.RecordDeployment, transaction, ("@procedure", procedureName),
            ("@checksum", checksum), ("@deployed_by", deployedBy), ("@previous_definition", (object?)previous ?? DBNull.Value)))
        await using (var reader = await record.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            id = reader.GetInt64(0);
            deployedAt = reader.GetDateTimeOffset(1);
        }
        await transaction.CommitAsync(cancellationToken);
        return new ProcedureDeployment(id, procedureName, checksum, deployedAt, deployedBy, previous);
    }

    public override async Task UndeployAsync(SqlConnection sql, string procedureName, ProcedureDeployment deployment,
        CancellationToken cancellationToken)
    {
        await using var transaction = (SqlTransaction)await sql.BeginTransactionAsync(cancellationToken);
        var restore = deployment.PreviousDefinition is { } previous
            ? TSqlDraftValidator.DefinitionAsCreateOrAlter(previous)
            : SqlServerSql.DropProcedure(ProcedureName.Parse(procedureName));
        await using (var command = Command(sql, restore, transaction))
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var forget = Command(sql, SqlServerSql.ForgetDeployment, transaction, ("@id", deployment.Id)))
        {
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public override async Task<bool> DropAsync(SqlConnection sql, string procedureName, CancellationToken cancellationToken)
    {
        await using var transaction = (SqlTransaction)await sql.BeginTransactionAsync(cancellationToken);
        bool existed;
        await using (var exists = Command(sql, SqlServerSql.ProcedureObjectId, transaction, ("@name", QualifiedName(procedureName))))
        {
            existed = await exists.ExecuteScalarAsync(cancellationToken) is not (null or DBNull);
        }
        await using (var drop = Command(sql, SqlServerSql.DropProcedure(ProcedureName.Parse(procedureName)), transaction))
        {
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var forget = Command(sql, SqlServerSql.ForgetProcedure, transaction, ("@procedure", procedureName)))
        {
            await forget.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return existed;
    }

    public override async Task<ProcedureDeployment?> ReadDeploymentAsync(SqlConnection sql, string procedureName, CancellationToken cancellationToken)
    {
        await using (var exists = Command(sql, SqlServerSql.DeploymentsExist))
        {
            if (Convert.ToInt32(await exists.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture) == 0) return null;
        }
        await using var command = Command(sql, SqlServerSql.LatestDeployment, ("@procedure", procedureName));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken)) return null;
        return new ProcedureDeployment(reader.GetInt64(0), reader.GetString(1), reader.GetString(2).Trim(), reader.GetDateTimeOffset(3),
            reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5));
    }

    // ---- Execute ----

    private sealed record Parameter(string Name, string SystemType, string UserType, short MaxLength, byte Precision, byte Scale, bool IsOutput);

    public override async Task<ExecutionResult> ExecuteAsync(SqlConnection sql, string procedureName,
        IReadOnlyDictionary<string, JsonElement> parameters, ExecutionLimits limits, string environment, CancellationToken cancellationToken)
    {
        var qualified = QualifiedName(procedureName);
        var stopwatch = Stopwatch.StartNew();

        object? objectId;
        await using (var lookup = Command(sql, SqlServerSql.ProcedureObjectId, ("@name", qualified)))
        {
            objectId = await lookup.ExecuteScalarAsync(cancellationToken);
        }
        if (objectId is null or DBNull)
        {
            throw new WorkspaceTargetException($"'{procedureName}' is not deployed in environment '{environment}'; publish it there first.",
                environment);
        }

        var declared = new List<Parameter>();
        await using (var catalog = Command(sql, SqlServerSql.ProcedureParameters, ("@object_id", objectId)))
        await using (var reader = await catalog.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                declared.Add(new Parameter(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetInt16(3),
                    reader.GetByte(4), reader.GetByte(5), reader.GetBoolean(6)));
            }
        }
        string definition;
        await using (var read = Command(sql, SqlServerSql.CurrentDefinition, ("@name", qualified)))
        {
            definition = await read.ExecuteScalarAsync(cancellationToken) as string ?? "";
        }
        var withDefaults = TSqlDraftValidator.ParametersWithDefaults(definition);

        // From here on this session is the execute user's, for good (the connection is never pooled).
        await using (var enter = Command(sql, SqlServerSql.EnterExecuteUser))
        {
            await enter.ExecuteNonQueryAsync(cancellationToken);
        }

        await using var command = new SqlCommand(qualified, sql)
        {
            CommandType = CommandType.StoredProcedure,
            // SqlClient's timeout sends an attention: the server stops the batch, not just the client.
            CommandTimeout = Math.Max(1, (int)Math.Ceiling(limits.Timeout.TotalSeconds)),
        };
        var byName = parameters.ToDictionary(p => "@" + p.Key.TrimStart('@'), p => p.Value, StringComparer.OrdinalIgnoreCase);
        foreach (var key in byName.Keys.Where(k => !declared.Any(d => string.Equals(d.Name, k, StringComparison.OrdinalIgnoreCase))))
        {
            throw new WorkspaceParameterException(key.TrimStart('@'), $"'{key.TrimStart('@')}' is not a parameter of this procedure "
                + $"(it takes: {string.Join(", ", declared.Select(d => d.Name.TrimStart('@')))}).", environment);
        }
        foreach (var parameter in declared)
        {
            var supplied = byName.TryGetValue(parameter.Name, out var value);
            if (!supplied && !parameter.IsOutput)
            {
                if (withDefaults.Contains(parameter.Name)) continue;
                throw new WorkspaceParameterException(parameter.Name.TrimStart('@'),
                    $"'{parameter.Name.TrimStart('@')}' is required (type {parameter.UserType}).", environment);
            }
            command.Parameters.Add(ToParameter(parameter, supplied ? value : default, supplied, environment));
        }
        var returnValue = command.Parameters.Add(new SqlParameter("@RETURN_VALUE", SqlDbType.Int) { Direction = ParameterDirection.ReturnValue });

        var resultSets = new List<ExecutionResultSet>();
        var truncated = false;
        var total = 0;
        var budget = new ResultBudget(limits.MaxBytes);
        long rowsAffected;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            do
            {
                if (reader.FieldCount == 0) continue;
                var columns = Enumerable.Range(0, reader.FieldCount).Select(i => new ExecutionColumn(reader.GetName(i), reader.GetDataTypeName(i)))
                    .ToList();
                var rows = new List<object?[]>();
                while (await reader.ReadAsync(cancellationToken))
                {
                    if (total >= limits.MaxRows) { truncated = true; continue; } // keep reading so output parameters arrive
                    var row = new object?[reader.FieldCount];
                    for (var i = 0; i < row.Length; i++) row[i] = ReadValue(reader, i);
                    if (!budget.TryAdd(row)) { truncated = true; break; }
                    rows.Add(row);
                    total++;
                }
                resultSets.Add(new ExecutionResultSet(columns, rows));
            }
            while (!budget.Exhausted && await reader.NextResultAsync(cancellationToken));
            // At the byte cap: cancel the batch rather than stream the rest (output parameters are then not returned).
            if (budget.Exhausted) command.Cancel();
            rowsAffected = reader.RecordsAffected;
        }

        var outputs = command.Parameters.Cast<SqlParameter>()
            .Where(p => p.Direction == ParameterDirection.InputOutput)
            .ToDictionary(p => p.ParameterName.TrimStart('@'), p => ResultValues.Normalize(p.Value), StringComparer.Ordinal);
        outputs["returnValue"] = ResultValues.Normalize(returnValue.Value);
        return new ExecutionResult(resultSets, outputs, Math.Max(0, rowsAffected), stopwatch.ElapsedMilliseconds, truncated,
            budget.Exhausted ? ExecutionResult.ByBytes : truncated ? ExecutionResult.ByRows : null);
    }

    /// <summary>A column's value; CLR types whose assembly is not here (geography, hierarchyid…) come back as a note, never a 500.</summary>
    private static object? ReadValue(SqlDataReader reader, int ordinal)
    {
        try
        {
            return ResultValues.Normalize(reader.GetValue(ordinal));
        }
        catch (Exception e) when (e is InvalidCastException or NotSupportedException or OverflowException or FileNotFoundException
                                       or FileLoadException or TypeLoadException or InvalidOperationException)
        {
            return $"(a value of type {reader.GetDataTypeName(ordinal)} that cannot be shown)";
        }
    }

    private static SqlParameter ToParameter(Parameter declared, JsonElement value, bool supplied, string environment)
    {
        var (type, size) = declared.SystemType.ToLowerInvariant() switch
        {
            "bit" => (SqlDbType.Bit, 0),
            "tinyint" => (SqlDbType.TinyInt, 0),
            "smallint" => (SqlDbType.SmallInt, 0),
            "int" => (SqlDbType.Int, 0),
            "bigint" => (SqlDbType.BigInt, 0),
            "decimal" or "numeric" => (SqlDbType.Decimal, 0),
            "money" => (SqlDbType.Money, 0),
            "smallmoney" => (SqlDbType.SmallMoney, 0),
            "float" => (SqlDbType.Float, 0),
            "real" => (SqlDbType.Real, 0),
            "date" => (SqlDbType.Date, 0),
            "datetime" => (SqlDbType.DateTime, 0),
            "datetime2" => (SqlDbType.DateTime2, 0),
            "smalldatetime" => (SqlDbType.SmallDateTime, 0),
            "datetimeoffset" => (SqlDbType.DateTimeOffset, 0),
            "time" => (SqlDbType.Time, 0),
            "uniqueidentifier" => (SqlDbType.UniqueIdentifier, 0),
            "char" => (SqlDbType.Char, (int)declared.MaxLength),
            "varchar" => (SqlDbType.VarChar, declared.MaxLength == -1 ? -1 : (int)declared.MaxLength),
            "nchar" => (SqlDbType.NChar, declared.MaxLength / 2),
            "nvarchar" => (SqlDbType.NVarChar, declared.MaxLength == -1 ? -1 : declared.MaxLength / 2),
            "binary" => (SqlDbType.Binary, (int)declared.MaxLength),
            "varbinary" => (SqlDbType.VarBinary, declared.MaxLength == -1 ? -1 : (int)declared.MaxLength),
            "xml" => (SqlDbType.Xml, -1),
            _ => (SqlDbType.NVarChar, -1),
        };
        var parameter = new SqlParameter(declared.Name, type)
        {
            Direction = declared.IsOutput ? ParameterDirection.InputOutput : ParameterDirection.Input,
            Precision = declared.Precision,
            Scale = declared.Scale,
        };
        if (size != 0) parameter.Size = size;
        if (!supplied || value.ValueKind == JsonValueKind.Null)
        {
            parameter.Value = DBNull.Value;
            return parameter;
        }
        try
        {
            var text = value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();
            parameter.Value = type switch
            {
                SqlDbType.Bit => value.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false,
                    _ => text == "1" || bool.Parse(text) },
                SqlDbType.TinyInt => byte.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.SmallInt => short.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.Int => int.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.BigInt => long.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.Decimal or SqlDbType.Money or SqlDbType.SmallMoney => decimal.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture),
                SqlDbType.Float => ParameterNumbers.FiniteDouble(text),
                SqlDbType.Real => ParameterNumbers.FiniteSingle(text),
                SqlDbType.Date => DateOnly.Parse(text, CultureInfo.InvariantCulture).ToDateTime(TimeOnly.MinValue),
                SqlDbType.DateTime or SqlDbType.DateTime2 or SqlDbType.SmallDateTime => DateTime.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.DateTimeOffset => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.Time => TimeSpan.Parse(text, CultureInfo.InvariantCulture),
                SqlDbType.UniqueIdentifier => Guid.Parse(text),
                SqlDbType.Binary or SqlDbType.VarBinary => Convert.FromBase64String(text),
                _ when value.ValueKind is JsonValueKind.Object or JsonValueKind.Array && type != SqlDbType.NVarChar => throw new FormatException(),
                _ => text,
            };
            return parameter;
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            var name = declared.Name.TrimStart('@');
            throw new WorkspaceParameterException(name, $"'{name}' must be a value of type {declared.UserType}: {value.GetRawText()} is not.",
                environment);
        }
    }

    private static string QualifiedName(string procedureName)
    {
        var name = ProcedureName.Parse(procedureName);
        return $"{SqlServerSql.Quote(name.SchemaOr(TSqlDraftValidator.DefaultSchema))}.{SqlServerSql.Quote(name.Name)}";
    }

    private static SqlCommand Command(SqlConnection connection, string text, params (string Name, object Value)[] parameters) =>
        Command(connection, text, null, parameters);

    private static SqlCommand Command(SqlConnection connection, string text, SqlTransaction? transaction,
        params (string Name, object Value)[] parameters)
    {
        var command = new SqlCommand(text, connection, transaction);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.Add(value switch
            {
                string s => new SqlParameter(name, SqlDbType.NVarChar, Math.Max(1, s.Length)) { Value = s },
                _ => new SqlParameter(name, value),
            });
        }
        return command;
    }
}

/// <summary>
/// Per-workspace pools: SqlClient pools by connection string, so a distinct Application Name is a distinct, bounded
/// pool. Execute sessions are never pooled: each enters the database's execute user WITH NO REVERT, a security
/// context that a pooled connection's reset could not undo. SqlClient has no physical-connection hook, so the
/// database's marker is checked (on a deploy connection) before the first connection is handed out and again after
/// every pool clear; a mismatch is a WorkspaceOwnershipException naming both sides.
/// </summary>
internal sealed class SqlServerConnectionSource(WorkspaceServer server, WorkspaceTarget target, WorkspaceOwnership ownership, string applicationName,
    WorkspacesOptions options) : IWorkspaceConnectionSource
{
    private readonly string _deploy = Build(server.ConnectionString, target.Database, applicationName + ":deploy", options, pooling: true);
    private readonly string _execute = Build(server.ConnectionString, target.Database, applicationName + ":exec", options, pooling: false);
    private volatile bool _verified;

    private static string Build(string connectionString, string database, string applicationName, WorkspacesOptions options, bool pooling) =>
        new SqlConnectionStringBuilder(connectionString)
        {
            InitialCatalog = database,
            ApplicationName = applicationName,
            Pooling = pooling,
            MinPoolSize = 0,
            MaxPoolSize = options.MaxPoolSize,
            ConnectTimeout = WorkspacesOptions.WholeSeconds(options.ConnectTimeout),
            CommandTimeout = WorkspacesOptions.WholeSeconds(options.OperationTimeout),
            ConnectRetryCount = 0, // retries are the cache's job (with backoff and a circuit breaker)
        }.ConnectionString;

    /// <summary>Unpooled execute sessions are still bounded, like a pool: at most MaxPoolSize at once per environment.</summary>
    private readonly SemaphoreSlim _executeSessions = new(Math.Max(1, options.MaxPoolSize));

    public async Task<DbConnection> OpenAsync(WorkspaceCredential credential, CancellationToken cancellationToken)
    {
        if (!_verified)
        {
            await using var check = await OpenAsync(_deploy, cancellationToken);
            WorkspaceMarker.Verify(await SqlServerWorkspaceProvider.ReadMarkerAsync(check, cancellationToken), ownership, target);
            _verified = true;
        }
        if (credential == WorkspaceCredential.Deploy) return await OpenAsync(_deploy, cancellationToken);
        if (!await _executeSessions.WaitAsync(TimeSpan.FromSeconds(WorkspacesOptions.WholeSeconds(options.ConnectTimeout)), cancellationToken))
        {
            throw new TimeoutException($"All {options.MaxPoolSize} execute sessions of this environment are busy.");
        }
        try
        {
            var connection = await OpenAsync(_execute, cancellationToken);
            var released = 0;
            void Release() { if (Interlocked.Exchange(ref released, 1) == 0) _executeSessions.Release(); }
            connection.StateChange += (_, change) => { if (change.CurrentState == ConnectionState.Closed) Release(); };
            connection.Disposed += (_, _) => Release();
            return connection;
        }
        catch
        {
            _executeSessions.Release();
            throw;
        }
    }

    private static async Task<SqlConnection> OpenAsync(string connectionString, CancellationToken cancellationToken)
    {
        var connection = new SqlConnection(connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public void ClearPools()
    {
        _verified = false; // a cleared pool may come back to another database under the same name: check again
        using var deploy = new SqlConnection(_deploy);
        SqlConnection.ClearPool(deploy);
    }

    public ValueTask DisposeAsync()
    {
        ClearPools();
        return ValueTask.CompletedTask;
    }
}
