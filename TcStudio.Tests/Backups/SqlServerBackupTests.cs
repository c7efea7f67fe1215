using System.Reflection;
using Microsoft.Data.SqlClient;
using Microsoft.SqlServer.TransactSql.ScriptDom;
using TcStudio.MigrationWorker.Backups;
using TcStudio.Tests.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.SqlServer;

namespace TcStudio.Tests.Backups;

/// <summary>The T-SQL of SQL Server workspace backups, without a SQL Server: each text parses, with the options the issue asks for.</summary>
public sealed class SqlServerBackupTSqlTests
{
    public static TheoryData<string, string> Texts()
    {
        var data = new TheoryData<string, string>();
        foreach (var field in typeof(SqlServerBackupSql).GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral))
        {
            data.Add(field.Name, (string)field.GetRawConstantValue()!);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void Every_text_the_backup_sends_parses(string name, string sql)
    {
        TSqlDraftValidator.Parse(sql, out var errors);
        Assert.True(errors.Count == 0, $"{name}: {string.Join("; ", errors.Select(e => $"{e.Line}:{e.Column} {e.Message}"))}");
    }

    [Fact]
    public void The_backup_is_full_checksummed_compressed_and_aimed_by_parameters_only()
    {
        var script = TSqlDraftValidator.Parse(SqlServerBackupSql.BackupDatabase, out _);
        var backup = Assert.IsType<BackupDatabaseStatement>(Assert.Single(Assert.Single(script.Batches).Statements));
        Assert.Equal("@database", backup.DatabaseName.ValueExpression is VariableReference v ? v.Name : null);
        var device = Assert.Single(backup.Devices);
        Assert.Equal(DeviceType.Disk, device.DeviceType);
        Assert.Equal("@path", Assert.IsType<VariableReference>(device.PhysicalDevice).Name);
        var options = backup.Options.Select(o => o.OptionKind).ToHashSet();
        Assert.Superset(new HashSet<BackupOptionKind> { BackupOptionKind.Checksum, BackupOptionKind.Compression, BackupOptionKind.Init,
            BackupOptionKind.Format }, options);
        Assert.Empty(backup.Files); // the whole database, not a file group
        Assert.DoesNotContain(backup.Options,
            o => o.OptionKind is BackupOptionKind.CopyOnly or BackupOptionKind.Differential or BackupOptionKind.ContinueAfterError);
    }

    [Fact]
    public void The_check_reads_the_whole_backup_back_with_its_checksums()
    {
        var script = TSqlDraftValidator.Parse(SqlServerBackupSql.VerifyBackup, out _);
        var restore = Assert.IsType<RestoreStatement>(Assert.Single(Assert.Single(script.Batches).Statements));
        Assert.Equal(RestoreStatementKind.VerifyOnly, restore.Kind);
        Assert.Equal("@path", Assert.IsType<VariableReference>(Assert.Single(restore.Devices).PhysicalDevice).Name);
        Assert.Contains(restore.Options, o => o.OptionKind == RestoreOptionKind.Checksum);
    }

    [Theory]
    [InlineData(@"D:\Backups", "acme_dev-x.bak", @"D:\Backups\acme_dev-x.bak")]
    [InlineData(@"D:\Backups\", "acme_dev-x.bak", @"D:\Backups\acme_dev-x.bak")]
    [InlineData("/var/opt/mssql/backup/", "acme_dev-x.bak", "/var/opt/mssql/backup/acme_dev-x.bak")]
    public void The_path_on_the_SQL_Server_host_uses_that_host_s_separator(string directory, string file, string expected) =>
        Assert.Equal(expected, SqlServerBackupSql.RemotePath(directory, file));
}

/// <summary>
/// A real SQL Server backup and RESTORE VERIFYONLY. Runs when TCSTUDIO_TEST_SQLSERVER is set (and
/// TCSTUDIO_TEST_SQLSERVER_BACKUP_DIRECTORY, a directory on that server's host; default /var/opt/mssql/data);
/// reported as skipped, naming the variable, otherwise.
/// </summary>
public sealed class SqlServerBackupIntegrationTests
{
    public static bool SqlServerConfigured => SqlServerApiFixture.Configured;

    [Fact(Skip = SqlServerApiFixture.SkipReason, SkipUnless = nameof(SqlServerConfigured))]
    public async Task SqlServer_workspace_database_is_backed_up_with_checksum_and_compression_and_verified()
    {
        var databaseName = $"tcstudio_test_backup_{Guid.NewGuid():N}"[..32];
        await SqlServerApiFixture.ExecuteOnSqlServerAsync("master", $"CREATE DATABASE [{databaseName}]");
        using var local = BackupFixture.NewDirectory("sqlserver");
        try
        {
            await SqlServerApiFixture.ExecuteOnSqlServerAsync(databaseName,
                "CREATE TABLE dbo.t (id int PRIMARY KEY); INSERT INTO dbo.t VALUES (1), (2);");
            var options = new BackupOptions
            {
                Directory = local.Path,
                SqlServerDirectory = Environment.GetEnvironmentVariable("TCSTUDIO_TEST_SQLSERVER_BACKUP_DIRECTORY") ?? "/var/opt/mssql/data",
            };
            var output = new StringWriter();
            var server = new WorkspaceServer("sql", "sqlserver", SqlServerApiFixture.SqlServerConnectionString!, null);
            var result = await new SqlServerBackup(options, output, TimeProvider.System)
                .RunAsync(server, databaseName, Path.Combine(local.Path, "workspaces", "sql"), "ws", "dev", CancellationToken.None);

            Assert.Contains("percent processed", output.ToString());
            Assert.Contains("RESTORE VERIFYONLY: the backup set on", output.ToString());
            Assert.Equal(("sqlserver", databaseName), (result.Manifest.Kind, result.Manifest.Database));
            Assert.True(result.Manifest.SizeBytes > 0);
            var checksums = await SqlServerApiFixture.ScalarOnSqlServerAsync("msdb",
                $"SELECT TOP (1) CAST(has_backup_checksums AS int) FROM dbo.backupset WHERE database_name = N'{databaseName}' "
                + "ORDER BY backup_set_id DESC");
            Assert.Equal(1, checksums);
        }
        finally
        {
            SqlConnection.ClearAllPools();
            await SqlServerApiFixture.ExecuteOnSqlServerAsync("master",
                $"ALTER DATABASE [{databaseName}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{databaseName}];");
        }
    }
}
