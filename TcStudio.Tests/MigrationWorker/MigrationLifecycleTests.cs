using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.MigrationWorker;

/// <summary>The worker's migrate / status / revert / script verbs, run as the real program against an empty database.</summary>
public sealed class MigrationLifecycleTests(EmptyDatabaseFixture database) : IClassFixture<EmptyDatabaseFixture>
{
    private Task<List<string>> LeftoversAsync() => database.ColumnAsync("""
        SELECT 'relation ' || relname FROM pg_class WHERE relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
        UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
        UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
        """);

    [Fact]
    public async Task Migrate_from_empty_revert_to_zero_leaves_nothing_and_migrate_again_works()
    {
        var status = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "status");
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Contains("pending", status.StandardOutput);
        Assert.Contains("0 applied", status.StandardOutput);

        var script = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "script");
        Assert.Equal(0, script.ExitCode);
        Assert.Contains("CREATE TABLE users", script.StandardOutput);
        Assert.DoesNotContain("info:", script.StandardOutput);

        var migrate = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "migrate");
        Assert.True(migrate.ExitCode == 0, migrate.ToString());
        Assert.Contains("applied 2", migrate.StandardOutput.Replace("applied 20", "applied 2"));
        Assert.Matches("migrate: applied \\d+ migrations? in", migrate.StandardOutput);
        Assert.Contains("relation users", await LeftoversAsync());

        var again = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "migrate");
        Assert.Equal(0, again.ExitCode);
        Assert.Contains("migrate: up to date", again.StandardOutput);

        var upToDateScript = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "script");
        Assert.Contains("up to date", upToDateScript.StandardOutput);

        var revert = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "revert", "--to", "0");
        Assert.True(revert.ExitCode == 0, revert.ToString());
        Assert.Contains("reverted ", revert.StandardOutput);
        Assert.Empty(await LeftoversAsync());

        var remigrate = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "migrate");
        Assert.True(remigrate.ExitCode == 0, remigrate.ToString());
        var finalStatus = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "status");
        Assert.Contains("0 pending", finalStatus.StandardOutput);
        Assert.DoesNotContain("  pending", finalStatus.StandardOutput);
    }

    [Fact]
    public async Task Bad_usage_exits_2_with_one_line()
    {
        var unknownVerb = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "explode");
        Assert.Equal(2, unknownVerb.ExitCode);
        Assert.Contains("explode", unknownVerb.StandardError);

        var unknownMigration = await MigrationWorkerRunner.RunAsync(database.ConnectionString, "migrate", "--to", "NoSuchMigration");
        Assert.Equal(2, unknownMigration.ExitCode);
        Assert.Contains("Unknown migration 'NoSuchMigration'", unknownMigration.StandardError);
    }

    [Fact]
    public async Task The_idempotent_script_needs_no_database()
    {
        var script = await MigrationWorkerRunner.RunAsync(connectionString: null, "script", "--idempotent");
        Assert.True(script.ExitCode == 0, script.ToString());
        Assert.Contains("IF NOT EXISTS", script.StandardOutput);
        Assert.Contains("CREATE TABLE users", script.StandardOutput);
    }
}
