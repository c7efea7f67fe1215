using System.Net;
using System.Net.Http.Json;
using Microsoft.Data.SqlClient;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Api.Environments;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Environments;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Procedures;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.WorkspaceDatabases;

/// <summary>The API with the SQL Server in TCSTUDIO_TEST_SQLSERVER registered as server 'sql' (when set).</summary>
public sealed class SqlServerApiFixture(PostgresServer server) : WorkspaceApiFixture(server)
{
    public const string Variable = "TCSTUDIO_TEST_SQLSERVER";
    public const string SkipReason = $"No SQL Server configured: set {Variable} to a connection string (a login that may create databases) "
        + "to run the SQL Server integration tests.";

    public static string? SqlServerConnectionString => Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } value ? value : null;
    public static bool Configured => SqlServerConnectionString is not null;

    protected override IEnumerable<KeyValuePair<string, string?>> ExtraSettings =>
        Configured ? [new("ConnectionStrings:sql", SqlServerConnectionString)] : [];

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (!Configured) return;
        foreach (var database in _created)
        {
            await ExecuteOnSqlServerAsync("master", $"IF DB_ID(N'{database}') IS NOT NULL BEGIN "
                + $"ALTER DATABASE [{database}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{database}]; END");
        }
    }

    private readonly List<string> _created = [];

    public string NewSqlServerDatabase(string purpose)
    {
        var name = $"tcstudio_test_{purpose}_{Guid.NewGuid():N}"[..40];
        lock (_created) _created.Add(name);
        return name;
    }

    public static async Task<object?> ScalarOnSqlServerAsync(string database, string sql)
    {
        var settings = new SqlConnectionStringBuilder(SqlServerConnectionString) { InitialCatalog = database, Pooling = false };
        await using var connection = new SqlConnection(settings.ConnectionString);
        await connection.OpenAsync();
        await using var command = new SqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }

    public static async Task ExecuteOnSqlServerAsync(string database, string sql) => await ScalarOnSqlServerAsync(database, sql);
}

/// <summary>
/// The PostgreSQL scenarios again against a real SQL Server. They run when TCSTUDIO_TEST_SQLSERVER is set and are
/// reported as skipped, naming that variable, otherwise (see the README for running one in a container).
/// </summary>
public sealed class SqlServerWorkspaceTests(SqlServerApiFixture api) : IClassFixture<SqlServerApiFixture>
{
    public static bool SqlServerConfigured => SqlServerApiFixture.Configured;

    /// <summary>A new workspace of the admin's with environment dev on a new database of the SQL Server.</summary>
    private async Task<(HttpClient Admin, string Slug, string Database)> NewWorkspaceOnSqlServerAsync(string prefix)
    {
        var admin = await api.AdminAsync();
        var slug = (await ApiFixture.NewWorkspaceAsync(admin, prefix)).Slug;
        var database = api.NewSqlServerDatabase(prefix.Replace('-', '_'));
        await HttpAssert.ReadAsync<EnvironmentDetails>(await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "dev", server = "sql", databaseName = database, create = true }), HttpStatusCode.Created);
        return (admin, slug, database);
    }

    private const string GetOrders = """
        CREATE PROCEDURE dbo.GetOrders
            @First int,
            @Last int = 10,
            @Count int OUTPUT
        AS
        BEGIN
            SET NOCOUNT ON;
            SELECT value AS Id, CONCAT(N'order ', value) AS Label FROM GENERATE_SERIES(@First, @Last);
            SELECT N'done' AS Note;
            SET @Count = @Last - @First + 1;
            RETURN 7;
        END;
        """;

    [Fact(Skip = SqlServerApiFixture.SkipReason, SkipUnless = nameof(SqlServerConfigured))]
    public async Task SqlServer_environment_is_created_with_its_base_schema_and_migrates_reverts_and_detects_tampering()
    {
        var (admin, slug, database) = await NewWorkspaceOnSqlServerAsync("ss-env");
        Assert.Equal(2, (int)(await SqlServerApiFixture.ScalarOnSqlServerAsync(database,
            "SELECT MAX(version) FROM tcstudio.tcstudio_schema_migrations"))!);

        var databases = api.Factory.Services.GetRequiredService<WorkspaceDatabaseService>();
        var workspaceId = await api.ScalarAsync<Guid>("SELECT id FROM workspaces WHERE slug = @s", ("s", slug));
        var environmentId = await api.ScalarAsync<Guid>(
            "SELECT e.id FROM workspace_environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.slug = @s AND e.name = 'dev'", ("s", slug));
        var target = new WorkspaceTarget(workspaceId, slug, "dev", "sql", database, environmentId);
        Assert.Equal(2, (await databases.RevertAsync(target, 0, null, CancellationToken.None)).Count);
        Assert.Equal("behind", (await EnvironmentCalls.StatusAsync(admin, slug)).SchemaState);
        await EnvironmentCalls.MigrateAsync(admin, slug);

        await SqlServerApiFixture.ExecuteOnSqlServerAsync(database,
            "UPDATE tcstudio.tcstudio_schema_migrations SET checksum = REPLICATE('0', 64) WHERE version = 1");
        Assert.Equal("checksum_mismatch", (await EnvironmentCalls.StatusAsync(admin, slug)).SchemaState);
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/environments/dev/migrate", null), HttpStatusCode.Conflict);

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}/environments/dev?dropDatabase=true")).StatusCode);
        Assert.Null(await SqlServerApiFixture.ScalarOnSqlServerAsync("master", $"SELECT DB_ID(N'{database}')") as int?);
    }

    [Fact(Skip = SqlServerApiFixture.SkipReason, SkipUnless = nameof(SqlServerConfigured))]
    public async Task SqlServer_procedures_are_validated_published_and_executed_with_output_parameters_and_several_result_sets()
    {
        var (admin, slug, database) = await NewWorkspaceOnSqlServerAsync("ss-exec");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dbo.GetOrders", GetOrders);
        var validation = await ProcedureCalls.ValidateAsync(admin, slug, "dbo.GetOrders");
        Assert.True(validation.Valid, string.Join("; ", validation.Errors));
        await ProcedureCalls.PublishAsync(admin, slug, "dbo.GetOrders");
        await ProcedureCalls.PublishAsync(admin, slug, "dbo.GetOrders"); // CREATE OR ALTER

        var result = await ProcedureCalls.ExecutedAsync(admin, slug, "dbo.GetOrders", new { parameters = new { First = 3, Last = 5 } });
        Assert.Equal(2, result.ResultSets.Count);
        Assert.Equal(3, result.ResultSets[0].Rows.Count);
        Assert.Equal("done", result.ResultSets[1].Cell(0, 0).GetString());
        Assert.Equal(3, result.Output("Count").GetInt32());
        Assert.Equal(7, result.Output("returnValue").GetInt32());

        await HttpAssert.ValidationProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.GetOrders",
            new { parameters = new { First = "x" } }), "parameters.First");
        await HttpAssert.ValidationProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.GetOrders",
            new { parameters = new { Last = 3 } }), "parameters.First");

        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dbo.Fails", "CREATE PROCEDURE dbo.Fails AS THROW 50001, N'no stock', 1;");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dbo.Slow", "CREATE PROCEDURE dbo.Slow AS WAITFOR DELAY '00:00:30';");
        await ProcedureCalls.PublishAsync(admin, slug, "dbo.Fails");
        await ProcedureCalls.PublishAsync(admin, slug, "dbo.Slow");
        var error = await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.Fails", new { }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Equal(50001, error.GetProperty("number").GetInt32());
        await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.Slow", new { timeoutSeconds = 1 }),
            HttpStatusCode.GatewayTimeout);

        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dbo.Shell", "CREATE PROCEDURE dbo.Shell AS EXEC xp_cmdshell 'whoami';");
        await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/dbo.Shell/publish?env=dev", null),
            HttpStatusCode.UnprocessableEntity);

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/workspaces/{slug}/procedures/dbo.GetOrders")).StatusCode);
        Assert.Null(await SqlServerApiFixture.ScalarOnSqlServerAsync(database, "SELECT OBJECT_ID(N'dbo.GetOrders', N'P')") as int?);
    }

    [Fact(Skip = SqlServerApiFixture.SkipReason, SkipUnless = nameof(SqlServerConfigured))]
    public async Task SqlServer_deploy_is_undone_when_the_system_database_step_fails()
    {
        var (admin, slug, database) = await NewWorkspaceOnSqlServerAsync("ss-comp");
        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dbo.Price", "CREATE PROCEDURE dbo.Price AS SELECT 10 AS Price;");
        await ProcedureCalls.PublishAsync(admin, slug, "dbo.Price");
        // The system database refuses to record publishes whose SQL carries the marker.
        await using (await api.RefuseRecordingPublishesAsync())
        {
            await HttpAssert.ReadAsync<ProcedureDraft>(await admin.PutAsJsonAsync($"/api/workspaces/{slug}/procedures/dbo.Price",
                new { sql = "CREATE PROCEDURE dbo.Price AS SELECT 99 AS Price; -- fail-the-system-step" }));
            var failed = await HttpAssert.ProblemAsync(await admin.PostAsync($"/api/workspaces/{slug}/procedures/dbo.Price/publish?env=dev", null),
                HttpStatusCode.InternalServerError);
            Assert.Equal("system", failed.GetProperty("failedSide").GetString());
            var price = await ProcedureCalls.ExecutedAsync(admin, slug, "dbo.Price", new { });
            Assert.Equal(10, price.ResultSets[0].Cell(0, 0).GetInt32());
            Assert.Equal(1, (int)(await SqlServerApiFixture.ScalarOnSqlServerAsync(database,
                "SELECT COUNT(*) FROM tcstudio.procedure_deployments"))!);
        }
    }

    [Fact(Skip = SqlServerApiFixture.SkipReason, SkipUnless = nameof(SqlServerConfigured))]
    public async Task SqlServer_procedures_run_as_their_databases_own_user_without_login_and_cannot_leave_that_database()
    {
        var (admin, slug, database) = await NewWorkspaceOnSqlServerAsync("ss-ident");
        var (_, otherSlug, otherDatabase) = await NewWorkspaceOnSqlServerAsync("ss-other");
        Assert.NotEqual(slug, otherSlug);

        // Each database has its own execute user: no login behind it, EXECUTE on dbo and nothing at database level.
        foreach (var db in new[] { database, otherDatabase })
        {
            Assert.Equal(1, (int)(await SqlServerApiFixture.ScalarOnSqlServerAsync(db, """
                SELECT COUNT(*) FROM sys.database_principals AS dp
                WHERE dp.name = N'tcstudio_exec' AND dp.authentication_type_desc = N'NONE'
                  AND NOT EXISTS (SELECT 1 FROM sys.server_principals AS sp WHERE sp.sid = dp.sid)
                """))!);
            Assert.Equal(0, (int)(await SqlServerApiFixture.ScalarOnSqlServerAsync(db, """
                SELECT COUNT(*) FROM sys.database_permissions AS p JOIN sys.database_principals AS dp ON dp.principal_id = p.grantee_principal_id
                WHERE dp.name = N'tcstudio_exec' AND p.class_desc <> N'SCHEMA' AND p.permission_name <> N'CONNECT'
                """))!);
            Assert.Equal(0, (int)(await SqlServerApiFixture.ScalarOnSqlServerAsync(db, """
                SELECT COUNT(*) FROM sys.database_role_members AS m JOIN sys.database_principals AS dp ON dp.principal_id = m.member_principal_id
                WHERE dp.name = N'tcstudio_exec'
                """))!);
        }

        await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, "dbo.WhoAmI", """
            CREATE PROCEDURE dbo.WhoAmI AS
            SELECT USER_NAME() AS UserName, IS_SRVROLEMEMBER(N'sysadmin') AS IsSysadmin,
                   HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') AS ServerState,
                   HAS_PERMS_BY_NAME(DB_NAME(), N'DATABASE', N'CREATE TABLE') AS CreateTable;
            """);
        await ProcedureCalls.PublishAsync(admin, slug, "dbo.WhoAmI");
        var who = (await ProcedureCalls.ExecutedAsync(admin, slug, "dbo.WhoAmI", new { })).ResultSets[0];
        Assert.Equal("tcstudio_exec", who.Cell(0, 0).GetString());
        Assert.True(who.Cell(0, 1).ValueKind == System.Text.Json.JsonValueKind.Null || who.Cell(0, 1).GetInt32() == 0, who.Cell(0, 1).ToString());
        Assert.Equal(0, who.Cell(0, 2).GetInt32());
        Assert.Equal(0, who.Cell(0, 3).GetInt32());

        // As if the allow-list had missed something: replace published bodies behind TC Studio's back, then execute.
        foreach (var name in new[] { "dbo.ReadOther", "dbo.DynamicDdl", "dbo.CallOther" })
        {
            await WorkspaceApiFixture.CreateProcedureAsync(admin, slug, name, $"CREATE PROCEDURE {name} AS SELECT 1 AS One;");
            await ProcedureCalls.PublishAsync(admin, slug, name);
        }
        await SqlServerApiFixture.ExecuteOnSqlServerAsync(database,
            $"ALTER PROCEDURE dbo.ReadOther AS SELECT COUNT(*) AS N FROM [{otherDatabase}].tcstudio.tcstudio_schema_migrations;");
        await SqlServerApiFixture.ExecuteOnSqlServerAsync(database, "ALTER PROCEDURE dbo.DynamicDdl AS EXEC (N'CREATE TABLE dbo.Pwned (x int)');");
        await SqlServerApiFixture.ExecuteOnSqlServerAsync(database, $"ALTER PROCEDURE dbo.CallOther AS EXEC [{otherDatabase}].sys.sp_helpuser;");

        var crossDatabase = await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.ReadOther", new { }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Equal(916, crossDatabase.GetProperty("number").GetInt32()); // not able to access the database under the current security context
        var dynamicDdl = await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.DynamicDdl", new { }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Equal(262, dynamicDdl.GetProperty("number").GetInt32()); // CREATE TABLE permission denied
        await HttpAssert.ProblemAsync(await ProcedureCalls.ExecuteAsync(admin, slug, "dbo.CallOther", new { }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Null(await SqlServerApiFixture.ScalarOnSqlServerAsync(database, "SELECT OBJECT_ID(N'dbo.Pwned', N'U')") as int?);

        // Execute sessions are closed after use, never returned to a pool with the impersonated context.
        Assert.Equal(0, (int)(await SqlServerApiFixture.ScalarOnSqlServerAsync("master",
            $"SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE program_name LIKE N'%/{slug}/dev:exec'"))!);
    }
}
