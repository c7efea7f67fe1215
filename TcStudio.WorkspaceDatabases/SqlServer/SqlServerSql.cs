namespace TcStudio.WorkspaceDatabases.SqlServer;

/// <summary>
/// Every T-SQL text the SQL Server provider sends, in one place, so a unit test can parse each one with ScriptDom
/// (there is no SQL Server on the build machines). Values always travel as parameters; the few identifiers that
/// cannot (database names in CREATE/DROP DATABASE) are validated by the caller and bracket-quoted here.
/// </summary>
public static class SqlServerSql
{
    public const string Ping = "SELECT 1;";

    public const string DatabaseExists = "SELECT CASE WHEN DB_ID(@database) IS NULL THEN 0 ELSE 1 END;";

    public static string CreateDatabase(string database) => $"CREATE DATABASE {Quote(database)};";

    public static string DropDatabase(string database) => $"""
        IF DB_ID(@database) IS NOT NULL
        BEGIN
            ALTER DATABASE {Quote(database)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE;
            DROP DATABASE {Quote(database)};
        END;
        """;

    /// <summary>
    /// The database's own execute principal: a user WITHOUT LOGIN (no server identity, so it exists in this database
    /// only and nothing outside can sign in as it), entered with <see cref="EnterExecuteUser"/>.
    /// </summary>
    public static string ExecuteUser => "tcstudio_exec";

    // Concatenated only to keep the source lines short: the text is exactly what the former raw string held.
    private const string RefuseTrustworthy =
        "IF EXISTS (SELECT 1 FROM sys.databases WHERE database_id = DB_ID() AND is_trustworthy_on = 1)\n"
        + "    THROW 50001, N'This database is TRUSTWORTHY, which would let code impersonating one of its users act outside it. "
        + "Turn it off (ALTER DATABASE ... SET TRUSTWORTHY OFF) before TC Studio uses it.', 1;";

    /// <summary>
    /// Creates (or keeps) the execute user and gives it EXECUTE on the dbo schema and nothing else; every deploy adds
    /// its procedure's schema (<see cref="GrantExecuteOnSchema"/>). A TRUSTWORTHY database is refused: impersonation
    /// would not stay inside it.
    /// </summary>
    public const string EnsureExecuteUser = RefuseTrustworthy + """
        IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'tcstudio_exec')
            CREATE USER [tcstudio_exec] WITHOUT LOGIN WITH DEFAULT_SCHEMA = [dbo];
        GRANT EXECUTE ON SCHEMA::[dbo] TO [tcstudio_exec];
        """;

    public static string GrantExecuteOnSchema(string schema) => $"GRANT EXECUTE ON SCHEMA::{Quote(schema)} TO [tcstudio_exec];";

    /// <summary>
    /// Sent alone, as an ad hoc batch (no parameters: EXECUTE AS WITH NO REVERT is refused inside sp_executesql),
    /// right before a procedure runs: from here to the end of the session everything runs as the execute user,
    /// whose rights stop at this database; nothing the procedure does can switch back. The session is then closed,
    /// never pooled (its security context could not be reset).
    /// </summary>
    public const string EnterExecuteUser = RefuseTrustworthy + """
        EXECUTE AS USER = N'tcstudio_exec' WITH NO REVERT;
        """;

    /// <summary>The database's owner (a login name), or NULL when the database does not exist.</summary>
    public const string DatabaseOwner = "SELECT SUSER_SNAME(owner_sid) FROM sys.databases WHERE name = @database;";

    /// <summary>
    /// Writes the ownership marker (which workspace environment this database belongs to) in a schema of its own that
    /// only the deploy credential (dbo) writes; checked before connections are used and before the database is dropped.
    /// </summary>
    public const string WriteMarker = """
        SET XACT_ABORT ON;
        IF SCHEMA_ID(N'tcstudio_ownership') IS NULL EXEC (N'CREATE SCHEMA tcstudio_ownership AUTHORIZATION dbo;');
        IF OBJECT_ID(N'tcstudio_ownership.marker', N'U') IS NULL
            CREATE TABLE tcstudio_ownership.marker (
                singleton bit NOT NULL CONSTRAINT df_marker_singleton DEFAULT 1 CONSTRAINT pk_marker PRIMARY KEY
                    CONSTRAINT ck_marker_singleton CHECK (singleton = 1),
                workspace_id uniqueidentifier NOT NULL,
                environment_id uniqueidentifier NOT NULL,
                database_id uniqueidentifier NOT NULL,
                server_identity nvarchar(300) NOT NULL,
                written_at datetimeoffset NOT NULL CONSTRAINT df_marker_written_at DEFAULT SYSDATETIMEOFFSET()
            );
        BEGIN TRANSACTION;
        DELETE FROM tcstudio_ownership.marker;
        INSERT INTO tcstudio_ownership.marker (singleton, workspace_id, environment_id, database_id, server_identity)
        VALUES (1, @workspace_id, @environment_id, @database_id, @server_identity);
        COMMIT TRANSACTION;
        """;

    /// <summary>The marker's one row; no result set at all when the database has no marker.</summary>
    public const string ReadMarker = """
        IF OBJECT_ID(N'tcstudio_ownership.marker', N'U') IS NOT NULL
            SELECT workspace_id, environment_id, database_id FROM tcstudio_ownership.marker;
        """;

    public const string HistoryExists =
        "SELECT CASE WHEN OBJECT_ID(N'tcstudio.tcstudio_schema_migrations', N'U') IS NULL THEN 0 ELSE 1 END;";

    public const string ReadHistory =
        "SELECT version, name, checksum, applied_at, duration_ms FROM tcstudio.tcstudio_schema_migrations ORDER BY version;";

    public const string RecordMigration = """
        INSERT INTO tcstudio.tcstudio_schema_migrations (version, name, checksum, duration_ms)
        VALUES (@version, @name, @checksum, @duration_ms);
        """;

    public const string ForgetMigration = "DELETE FROM tcstudio.tcstudio_schema_migrations WHERE version = @version;";

    /// <summary>A session-owned application lock: publishes of one procedure wait for each other, across processes.</summary>
    public const string LockProcedure = """
        DECLARE @result int;
        EXEC @result = sys.sp_getapplock @Resource = @resource, @LockMode = N'Exclusive', @LockOwner = N'Session', @LockTimeout = @timeout_ms;
        SELECT @result;
        """;

    public const string UnlockProcedure = "EXEC sys.sp_releaseapplock @Resource = @resource, @LockOwner = N'Session';";

    public const string ProcedureObjectId = "SELECT OBJECT_ID(@name, N'P');";

    public const string CurrentDefinition = "SELECT OBJECT_DEFINITION(OBJECT_ID(@name, N'P'));";

    public const string ProcedureParameters = """
        SELECT p.name, TYPE_NAME(p.system_type_id) AS system_type, TYPE_NAME(p.user_type_id) AS user_type,
               p.max_length, p.precision, p.scale, p.is_output
        FROM sys.parameters AS p
        WHERE p.object_id = @object_id AND p.parameter_id > 0
        ORDER BY p.parameter_id;
        """;

    public const string RecordDeployment = """
        INSERT INTO tcstudio.procedure_deployments ([procedure], checksum, deployed_by, previous_definition)
        OUTPUT INSERTED.id, INSERTED.deployed_at
        VALUES (@procedure, @checksum, @deployed_by, @previous_definition);
        """;

    public const string ForgetDeployment = "DELETE FROM tcstudio.procedure_deployments WHERE id = @id;";

    public const string ForgetProcedure = """
        IF OBJECT_ID(N'tcstudio.procedure_deployments', N'U') IS NOT NULL
            DELETE FROM tcstudio.procedure_deployments WHERE [procedure] = @procedure;
        """;

    public const string DeploymentsExist =
        "SELECT CASE WHEN OBJECT_ID(N'tcstudio.procedure_deployments', N'U') IS NULL THEN 0 ELSE 1 END;";

    public const string LatestDeployment = """
        SELECT TOP (1) id, [procedure], checksum, deployed_at, deployed_by, previous_definition
        FROM tcstudio.procedure_deployments
        WHERE [procedure] = @procedure
        ORDER BY id DESC;
        """;

    public static string DropProcedure(ProcedureName name) =>
        $"DROP PROCEDURE IF EXISTS {Quote(name.SchemaOr(TSqlDraftValidator.DefaultSchema))}.{Quote(name.Name)};";

    /// <summary>Splits a script on GO lines (a client-side batch separator that the server itself does not know).</summary>
    public static IReadOnlyList<string> Batches(string script) =>
        System.Text.RegularExpressions.Regex.Split(script.ReplaceLineEndings("\n"), @"^\s*GO\s*$",
                System.Text.RegularExpressions.RegexOptions.Multiline | System.Text.RegularExpressions.RegexOptions.IgnoreCase)
            .Where(batch => batch.Trim().Length > 0)
            .ToList();

    public static string Quote(string identifier) => "[" + identifier.Replace("]", "]]") + "]";
}
