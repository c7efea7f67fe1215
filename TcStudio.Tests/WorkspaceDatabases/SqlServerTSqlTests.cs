using System.Reflection;
using Microsoft.SqlServer.TransactSql.ScriptDom;
using TcStudio.Data.WorkspaceDatabases;
using TcStudio.Data.WorkspaceDatabases.SqlServer;

namespace TcStudio.Tests.WorkspaceDatabases;

/// <summary>
/// The SQL Server provider without a SQL Server: every T-SQL text it sends parses with ScriptDom (TSql160Parser),
/// and draft validation finds every refused construct, at its line.
/// </summary>
public sealed class SqlServerTSqlTests
{
    private static IList<ParseError> ParseErrors(string sql)
    {
        TSqlDraftValidator.Parse(sql, out var errors);
        return errors;
    }

    public static TheoryData<string, string> EmittedTexts()
    {
        var data = new TheoryData<string, string>();
        foreach (var field in typeof(SqlServerSql).GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral))
        {
            data.Add(field.Name, (string)field.GetRawConstantValue()!);
        }
        data.Add(nameof(SqlServerSql.CreateDatabase), SqlServerSql.CreateDatabase("acme_dev"));
        data.Add(nameof(SqlServerSql.DropDatabase), SqlServerSql.DropDatabase("acme_dev"));
        data.Add(nameof(SqlServerSql.DropProcedure), SqlServerSql.DropProcedure(ProcedureName.Parse("sales.GetOrders")));
        data.Add("DropProcedure (odd name)", SqlServerSql.DropProcedure(ProcedureName.Parse("Get]Orders")));
        foreach (var migration in WorkspaceMigrations.For("sqlserver"))
        {
            data.Add($"{migration.Id} up", migration.Up);
            data.Add($"{migration.Id} down", migration.Down);
        }
        data.Add("deploy text", TSqlDraftValidator.Check("dbo.GetOrders", "CREATE PROCEDURE dbo.GetOrders AS SELECT 1;").DeployText!);
        data.Add("restore text", TSqlDraftValidator.DefinitionAsCreateOrAlter("CREATE PROCEDURE [dbo].[GetOrders] AS SELECT 1"));
        return data;
    }

    [Theory]
    [MemberData(nameof(EmittedTexts))]
    public void Every_text_the_provider_sends_parses(string name, string sql)
    {
        var errors = ParseErrors(sql);
        Assert.True(errors.Count == 0, $"{name}: {string.Join("; ", errors.Select(e => $"{e.Line}:{e.Column} {e.Message}"))}");
    }

    [Fact]
    public void Migrations_are_ordered_with_both_directions()
    {
        var migrations = WorkspaceMigrations.For("sqlserver");
        Assert.Equal([1, 2], migrations.Select(m => m.Version));
        Assert.All(migrations, m => Assert.False(string.IsNullOrWhiteSpace(m.Down)));
        Assert.Equal(["CREATE SCHEMA tcstudio AUTHORIZATION dbo;"], SqlServerSql.Batches(migrations[0].Up).Take(1).Select(b => b.Trim().Split('\n').Last()));
        Assert.Equal(2, SqlServerSql.Batches(migrations[0].Down).Count);
        Assert.Equal(WorkspaceMigrations.For("postgres").Select(m => m.Id), migrations.Select(m => m.Id));
    }

    private const string Valid = """
        -- Orders of one customer, newest first.
        CREATE PROCEDURE dbo.GetOrders
            @CustomerId int,
            @Since date = NULL,
            @Count int OUTPUT
        AS
        BEGIN
            SET NOCOUNT ON;
            SELECT o.Id, o.Total FROM dbo.Orders AS o WHERE o.CustomerId = @CustomerId AND (@Since IS NULL OR o.PlacedOn >= @Since);
            SELECT @Count = @@ROWCOUNT;
            EXEC dbo.AuditRead @What = N'orders';
            EXECUTE AS USER = 'reporting';
            REVERT;
        END;
        """;

    [Fact]
    public void A_valid_draft_passes_and_is_deployed_as_create_or_alter_with_its_comments()
    {
        var check = TSqlDraftValidator.Check("dbo.GetOrders", Valid);
        Assert.True(check.Validation.IsValid, string.Join("; ", check.Validation.Errors));
        Assert.StartsWith("CREATE OR ALTER PROCEDURE dbo.GetOrders", check.DeployText);
        Assert.Contains("@@ROWCOUNT", check.DeployText);
        Assert.True(TSqlDraftValidator.Check("GetOrders", Valid).Validation.IsValid); // dbo is the default schema
        Assert.True(TSqlDraftValidator.Check("DBO.getorders", Valid).Validation.IsValid);
        Assert.Equal(["@Since"], TSqlDraftValidator.ParametersWithDefaults(Valid));

        var orAlter = TSqlDraftValidator.Check("dbo.GetOrders", Valid.Replace("CREATE PROCEDURE", "CREATE OR ALTER PROCEDURE"));
        Assert.StartsWith("CREATE OR ALTER PROCEDURE dbo.GetOrders", orAlter.DeployText);
    }

    public static TheoryData<string, string> RefusedConstructs => new()
    {
        { "USE master;", "USE" },
        { "EXEC xp_cmdshell 'dir';", "xp_cmdshell" },
        { "EXEC master..xp_cmdshell 'dir';", "xp_cmdshell" },
        { "EXEC sp_configure 'show advanced options', 1;", "sp_configure" },
        { "EXEC sys.sp_configure 'xp_cmdshell', 1;", "sp_configure" },
        { "SELECT * FROM OPENROWSET('SQLNCLI', 'Server=x;Trusted_Connection=yes;', 'SELECT 1') AS r;", "OPENROWSET" },
        { "SELECT * FROM OPENROWSET(BULK 'C:\\secrets.txt', SINGLE_CLOB) AS r;", "OPENROWSET" },
        { "SELECT * FROM OPENDATASOURCE('SQLNCLI', 'Data Source=x;Integrated Security=SSPI').db.dbo.t;", "OPENDATASOURCE" },
        { "SELECT * FROM OPENQUERY(remote, 'SELECT 1');", "OPENQUERY" },
        { "BULK INSERT dbo.t FROM 'C:\\data.csv';", "BULK INSERT" },
        { "CREATE LOGIN intruder WITH PASSWORD = 'P@ssw0rd-long-1';", "CREATE LOGIN" },
        { "ALTER LOGIN sa ENABLE;", "ALTER LOGIN" },
        { "DROP LOGIN someone;", "DROP LOGIN" },
        { "CREATE USER intruder WITHOUT LOGIN;", "CREATE USER" },
        { "ALTER USER someone WITH DEFAULT_SCHEMA = dbo;", "ALTER USER" },
        { "DROP USER someone;", "DROP USER" },
        { "CREATE DATABASE other;", "CREATE DATABASE" },
        { "ALTER DATABASE CURRENT SET TRUSTWORTHY ON;", "ALTER DATABASE" },
        { "DROP DATABASE other;", "DROP DATABASE" },
        { "GRANT CONTROL SERVER TO public;", "GRANT" },
        { "GRANT SELECT ON dbo.t TO public;", "GRANT" },
        { "REVOKE SELECT ON dbo.t FROM public;", "REVOKE" },
        { "DENY SELECT ON dbo.t TO public;", "DENY" },
        { "SHUTDOWN WITH NOWAIT;", "SHUTDOWN" },
        { "RECONFIGURE;", "RECONFIGURE" },
        { "EXECUTE AS LOGIN = 'sa';", "EXECUTE AS LOGIN" },
        { "EXEC (N'SELECT 1') AT remote_server;", "linked server" },
        { "EXEC (N'EXEC xp_cmdshell ''whoami''');", "xp_cmdshell" },
        { "IF 1 = 1 BEGIN TRY EXEC ('DROP DATABASE other'); END TRY BEGIN CATCH SELECT 1; END CATCH;", "DROP DATABASE" },
    };

    [Theory]
    [MemberData(nameof(RefusedConstructs))]
    public void Each_refused_construct_is_reported_at_its_line(string statement, string construct)
    {
        var sql = $"CREATE PROCEDURE dbo.Sneaky\nAS\nBEGIN\n    SELECT 1;\n    {statement}\nEND;";
        var check = TSqlDraftValidator.Check("dbo.Sneaky", sql);
        Assert.False(check.Validation.IsValid);
        var error = Assert.Single(check.Validation.Errors, e => e.Message.Contains(construct, StringComparison.OrdinalIgnoreCase));
        Assert.Equal(5, error.Line);
        Assert.Contains("not allowed", error.Message);
        Assert.Null(check.DeployText);
    }

    [Fact]
    public void Shape_name_and_syntax_problems_are_reported_with_line_and_column()
    {
        var syntax = TSqlDraftValidator.Check("dbo.Broken", "CREATE PROCEDURE dbo.Broken\nAS\nSELECT FROM WHERE;");
        var error = Assert.Single(syntax.Validation.Errors);
        Assert.Equal(3, error.Line);
        Assert.True(error.Column > 1);

        Assert.Contains("must match", TSqlDraftValidator.Check("dbo.Expected", "CREATE PROCEDURE dbo.Other AS SELECT 1;").Validation.Errors.Single().Message);
        Assert.Contains("must match", TSqlDraftValidator.Check("sales.GetOrders", "CREATE PROCEDURE dbo.GetOrders AS SELECT 1;").Validation.Errors.Single().Message);
        Assert.Contains("database", // ScriptDom itself refuses a database prefix on CREATE PROCEDURE
            TSqlDraftValidator.Check("GetOrders", "CREATE PROCEDURE otherdb.dbo.GetOrders AS SELECT 1;").Validation.Errors.Single().Message);
        Assert.Contains("exactly one", TSqlDraftValidator.Check("dbo.P",
            "CREATE PROCEDURE dbo.P AS SELECT 1;\nGO\nCREATE PROCEDURE dbo.Q AS SELECT 2;").Validation.Errors.Select(e => e.Message).First(m => m.Contains("exactly")));
        var extra = TSqlDraftValidator.Check("dbo.P", "CREATE PROCEDURE dbo.P AS SELECT 1;\nGO\nDROP TABLE dbo.Orders;");
        Assert.Equal(3, Assert.Single(extra.Validation.Errors).Line);
        Assert.False(TSqlDraftValidator.Check("dbo.P", "ALTER PROCEDURE dbo.P AS SELECT 1;").Validation.IsValid);
        Assert.False(TSqlDraftValidator.Check("dbo.P", "CREATE FUNCTION dbo.P() RETURNS int AS BEGIN RETURN 1 END;").Validation.IsValid);
        Assert.False(TSqlDraftValidator.Check("dbo.P", "").Validation.IsValid);
    }
}
