using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.Api.Activities;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Activities;
using TcStudio.SystemDatabase.Entities;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Activities;

/// <summary>
/// The activity log partitioned by month on created_at: the migration converts a filled table and reverts it,
/// keeping every row and its stream position; the worker's maintenance creates months ahead, moves what the default
/// partition holds into a new month, and drops by retention; a workspace's page reads only the months it needs;
/// the partitions are reachable only through the parent (and its row-level security).
/// </summary>
public sealed class PartitionedActivityLogTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private const string Migration = "PartitionedActivities";

    [Fact]
    public async Task The_log_is_partitioned_by_month_with_its_key_its_default_partition_and_the_seal_on_the_parent()
    {
        Assert.Equal("p", await database.ScalarAsync<string>("SELECT relkind::text FROM pg_class WHERE oid = 'activities'::regclass"));
        Assert.Equal("RANGE (created_at)", await database.ScalarAsync<string>("SELECT pg_get_partkeydef('activities'::regclass)"));
        Assert.Equal("PRIMARY KEY (created_at, id)", await database.ScalarAsync<string>(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_activities'"));

        var partitions = await database.ColumnAsync(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'activities'::regclass");
        foreach (var ahead in new[] { 0, 1, 2 }) Assert.Contains(ActivityPartitions.NameOf(PartitionTestData.ThisMonth.AddMonths(ahead)), partitions);
        Assert.Contains(ActivityPartitions.DefaultPartition, partitions);

        // The parent carries the seal; every partition has row-level security forced and no policy (no row for the app).
        Assert.Equal("true true 1", await database.ScalarAsync<string>("""
            SELECT relrowsecurity || ' ' || relforcerowsecurity || ' ' || (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid)
            FROM pg_class c WHERE oid = 'activities'::regclass
            """));
        Assert.Equal(0L, await database.ScalarAsync<long>("""
            SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'activities'::regclass AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
            """));
        // The live stream's trigger is on the parent.
        Assert.Equal(1L, await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'activities'::regclass AND tgname = 'trg_activities_notify_stream'"));
    }

    [Fact]
    public async Task A_role_subject_to_row_level_security_reads_a_partition_only_through_the_parent()
    {
        var (workspace, _) = await PartitionTestData.NewWorkspaceAsync(database, "sealed");
        await PartitionTestData.InsertAsync(database, workspace, 3, "now()");
        var role = "partition_reader_" + Guid.NewGuid().ToString("N")[..8];
        var partition = ActivityPartitions.NameOf(PartitionTestData.ThisMonth);
        // A role like the API's: DML granted on every table (partitions included, as a careless GRANT ON ALL TABLES
        // would), not BYPASSRLS. The seal then takes the partition's privileges back.
        await database.ExecuteAsync($"""
            CREATE ROLE {role} NOLOGIN NOBYPASSRLS;
            GRANT USAGE ON SCHEMA public TO {role};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
            """);
        try
        {
            Assert.True(await database.ScalarAsync<bool>($"SELECT has_table_privilege('{role}', '{partition}', 'SELECT')"));
            await database.ExecuteAsync(ActivityPartitions.SealPartitionsSql);
            Assert.False(await database.ScalarAsync<bool>($"SELECT has_table_privilege('{role}', '{partition}', 'SELECT')"));
            Assert.True(await database.ScalarAsync<bool>($"SELECT has_table_privilege('{role}', 'activities', 'SELECT')"));

            await using var connection = await database.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await using (var setRole = new NpgsqlCommand($"SET LOCAL ROLE {role}; SELECT set_config('tcstudio.workspace_id', '{workspace}', true)",
                             connection, transaction))
            {
                await setRole.ExecuteNonQueryAsync();
            }
            await using (var parent = new NpgsqlCommand("SELECT count(*) FROM activities", connection, transaction))
            {
                Assert.Equal(3L, await parent.ExecuteScalarAsync()); // its own workspace's rows, through the parent's policy
            }
            await using var direct = new NpgsqlCommand($"SELECT count(*) FROM {partition}", connection, transaction);
            var refused = await Assert.ThrowsAsync<PostgresException>(() => direct.ExecuteScalarAsync());
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, refused.SqlState);
        }
        finally
        {
            await database.ExecuteAsync(
                $"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; REVOKE ALL ON SCHEMA public FROM {role}; DROP ROLE {role}");
        }
    }

    [Fact]
    public async Task The_conversion_keeps_every_row_and_its_stream_position_and_reverts_to_the_plain_table()
    {
        var (workspace, _) = await PartitionTestData.NewWorkspaceAsync(database, "converted");
        await using var db = database.CreateDbContext();
        var migrator = new SystemDatabaseMigrator(db);
        var all = migrator.AllMigrations.ToList();
        var previous = all[all.FindIndex(m => m.EndsWith(Migration, StringComparison.Ordinal)) - 1];

        await migrator.RevertAsync(previous);
        Assert.Equal("r", await database.ScalarAsync<string>("SELECT relkind::text FROM pg_class WHERE oid = 'activities'::regclass"));
        // Rows of this month, of 14 months ago and of far in the past (before 600 months: the default partition).
        await PartitionTestData.InsertAsync(database, workspace, 40, "now() - i * interval '1 minute'");
        await PartitionTestData.InsertAsync(database, workspace, 5, "now() - interval '14 months' - i * interval '1 minute'");
        await PartitionTestData.InsertAsync(database, workspace, 2, "'1900-01-15'::timestamptz");
        var before = await database.ColumnAsync("SELECT id || ' ' || xid || ' ' || created_at FROM activities ORDER BY id");

        await migrator.MigrateAsync(null);
        Assert.Equal("p", await database.ScalarAsync<string>("SELECT relkind::text FROM pg_class WHERE oid = 'activities'::regclass"));
        Assert.Equal(before, await database.ColumnAsync("SELECT id || ' ' || xid || ' ' || created_at FROM activities ORDER BY id"));
        var fourteenMonthsAgo = ActivityPartitions.NameOf(ActivityPartitions.MonthOf(
            await database.ScalarAsync<DateTime>("SELECT max(created_at) FROM activities WHERE created_at < now() - interval '13 months'")));
        Assert.Equal(5L, await database.ScalarAsync<long>($"SELECT count(*) FROM {fourteenMonthsAgo}"));
        Assert.Equal(2L, await database.ScalarAsync<long>($"SELECT count(*) FROM {ActivityPartitions.DefaultPartition}"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM pg_class WHERE relname LIKE 'activities_conver%'"));

        await migrator.RevertAsync(previous);
        Assert.Equal("r", await database.ScalarAsync<string>("SELECT relkind::text FROM pg_class WHERE oid = 'activities'::regclass"));
        Assert.Equal("PRIMARY KEY (id)", await database.ScalarAsync<string>(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_activities'"));
        Assert.Equal(before, await database.ColumnAsync("SELECT id || ' ' || xid || ' ' || created_at FROM activities ORDER BY id"));
        Assert.Equal(1L, await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_policy WHERE polrelid = 'activities'::regclass AND polname = 'workspace_isolation'"));

        await migrator.MigrateAsync(null);
        Assert.Equal(before, await database.ColumnAsync("SELECT id || ' ' || xid || ' ' || created_at FROM activities ORDER BY id"));
        // A new row gets a transaction id above every copied one: the stream's order goes on.
        var newestCopied = await database.ScalarAsync<string>("SELECT max(xid)::text FROM activities");
        await PartitionTestData.InsertAsync(database, workspace, 1, "now()");
        Assert.Equal(1L, await database.ScalarAsync<long>($"SELECT count(*) FROM activities WHERE xid > '{newestCopied}'::xid8"));
    }

    [Fact]
    public void The_span_of_months_is_the_gapless_run_ending_with_the_newest()
    {
        DateOnly M(int year, int month) => new(year, month, 1);
        Assert.Null(ActivityPartitions.ContiguousSpan([]));
        var span = ActivityPartitions.ContiguousSpan([M(2026, 1), M(2026, 3), M(2026, 4), M(2025, 12), M(2026, 5)])!.Value;
        Assert.Equal(new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero), span.From);
        Assert.Equal(new DateTimeOffset(2026, 6, 1, 0, 0, 0, TimeSpan.Zero), span.To);
        Assert.True(ActivityPartitions.TryParseMonth("activities_y2026m11", out var month));
        Assert.Equal(M(2026, 11), month);
        Assert.False(ActivityPartitions.TryParseMonth("activities_default", out _));
        Assert.False(ActivityPartitions.TryParseMonth("activities_y2026m13", out _));
    }

    [Fact]
    public async Task A_workspace_s_recent_page_reads_only_the_months_it_needs()
    {
        var (workspace, _) = await PartitionTestData.NewWorkspaceAsync(database, "pruned");
        // Three older months with partitions of their own, and this month: 2,000 rows in each (enough for the planner
        // to prefer each month's index to reading the month whole).
        for (var back = 1; back <= 3; back++)
        {
            await using var connection = await database.OpenConnectionAsync();
            await using var create = new NpgsqlCommand(ActivityPartitions.CreateMonthSql(PartitionTestData.ThisMonth.AddMonths(-back)), connection);
            await create.ExecuteNonQueryAsync();
            await PartitionTestData.InsertAsync(database, workspace, 2000,
                $"'{PartitionTestData.ThisMonth.AddMonths(-back):yyyy-MM}-10 12:00:00+00'::timestamptz + i * interval '1 second'");
        }
        await PartitionTestData.InsertAsync(database, workspace, 2000, "date_trunc('month', now()) + i * interval '1 millisecond'");
        await database.ExecuteAsync("ANALYZE activities");

        await using var db = database.CreateDbContext();
        var names = await db.Database.SqlQueryRaw<string>(ActivityPartitions.ListPartitionNamesSql).ToListAsync();
        var span = ActivityPartitions.ContiguousSpan(names.Select(n =>
            ActivityPartitions.TryParseMonth(n, out var m) ? m : (DateOnly?)null).OfType<DateOnly>());
        Assert.NotNull(span);

        // The first page (50 + 1 rows) comes from this month alone; a page from a cursor in an older month starts there.
        // (Empty months ahead of this one are looked into too: one index probe each.)
        var cursorTwoMonthsBack = new ActivityCursor(
            new DateTimeOffset(PartitionTestData.ThisMonth.AddMonths(-2).AddDays(9).ToDateTime(new TimeOnly(12, 0, 30)), TimeSpan.Zero),
            Guid.CreateVersion7());
        foreach (var (cursor, oldest, newest) in new (ActivityCursor?, int, int)[] { (null, 0, 0), (cursorTwoMonthsBack, -3, -2) })
        {
            var plan = await ActivityPageCommands.ExplainAsync(db, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)", workspace, cursor, 51,
                span);
            TestContext.Current.TestOutputHelper?.WriteLine(string.Join('\n', plan));
            var scanned = plan.Where(line => !line.Contains("never executed", StringComparison.Ordinal)
                && line.Contains(" on activities_", StringComparison.Ordinal))
                .Select(line => System.Text.RegularExpressions.Regex.Match(line, " on (activities_[a-z0-9_]+?)(_workspace_id\\w*)? ").Groups[1].Value)
                .Where(name => name != ActivityPartitions.DefaultPartition)
                .Distinct().Order().ToList();
            var months = scanned.Select(name =>
                ActivityPartitions.TryParseMonth(name, out var m) ? m : throw new InvalidOperationException(name)).ToList();
            Assert.Equal(PartitionTestData.ThisMonth.AddMonths(oldest), months.Min());
            if (cursor is null) Assert.Contains(PartitionTestData.ThisMonth, months);
            else Assert.Equal(PartitionTestData.ThisMonth.AddMonths(newest), months.Max()); // months after the cursor are pruned
            Assert.DoesNotContain(plan, line => line.Contains("Seq Scan", StringComparison.Ordinal)
                && !line.Contains(ActivityPartitions.DefaultPartition, StringComparison.Ordinal));
        }

        // And the page is right: newest first, across months, the same as the plain ORDER BY over the whole log.
        var page = await ActivityPageCommands.IdsAsync(db, workspace, cursorTwoMonthsBack, 51, span);
        var expected = await ActivityPageCommands.IdsAsync(db, workspace, cursorTwoMonthsBack, 51, months: null);
        Assert.Equal(51, page.Count);
        Assert.Equal(expected, page);
    }
}

/// <summary>
/// The worker's partition maintenance, on a database of its own: it drops months by retention, so the months other
/// tests leave behind (the conversion's far past, for one) must not be there, whatever order the tests run in.
/// </summary>
public sealed class PartitionMaintenanceTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task Maintenance_creates_months_ahead_moves_rows_out_of_the_default_partition_and_drops_old_months_after_a_backup()
    {
        var (workspace, _) = await PartitionTestData.NewWorkspaceAsync(database, "maintained");
        var now = DateTimeOffset.UtcNow;
        // A row five months ahead has no partition yet: it waits in the default partition.
        await PartitionTestData.InsertAsync(database, workspace, 3, "date_trunc('month', now()) + interval '5 months' + interval '3 days'");
        // An old month with a partition of its own, for retention to drop.
        var old = PartitionTestData.ThisMonth.AddMonths(-30);
        await using (var connection = await database.OpenConnectionAsync())
        {
            await using var create = new NpgsqlCommand(ActivityPartitions.CreateMonthSql(old), connection);
            await create.ExecuteNonQueryAsync();
        }
        await PartitionTestData.InsertAsync(database, workspace, 4, $"'{old:yyyy-MM}-10 12:00:00+00'::timestamptz");
        Assert.Equal(4L, await database.ScalarAsync<long>($"SELECT count(*) FROM {ActivityPartitions.NameOf(old)}"));

        var backedUp = new List<string>();
        var lines = new List<string>();
        ActivityPartitionReport report;
        await using (var connection = await database.OpenConnectionAsync())
        {
            report = await ActivityPartitions.MaintainAsync(connection, now,
                new ActivityPartitionOptions { MonthsAhead = 6, RetentionMonths = 24 },
                (partition, _) => { backedUp.Add(partition); return Task.CompletedTask; }, lines.Add, CancellationToken.None);
        }

        var fiveAhead = ActivityPartitions.NameOf(PartitionTestData.ThisMonth.AddMonths(5));
        Assert.Contains(fiveAhead, report.Created);
        Assert.Contains(ActivityPartitions.NameOf(PartitionTestData.ThisMonth.AddMonths(6)), report.Created);
        Assert.Equal(3L, await database.ScalarAsync<long>($"SELECT count(*) FROM {fiveAhead}"));
        // This workspace's rows all found their month; other tests of the class may leave rows of their own (1900) there.
        Assert.Equal(0L, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM {ActivityPartitions.DefaultPartition} WHERE workspace_id = '{workspace}'"));
        Assert.Equal(await database.ScalarAsync<long>($"SELECT count(*) FROM {ActivityPartitions.DefaultPartition}"), report.RowsInDefault);
        Assert.Equal([ActivityPartitions.NameOf(old)], report.Dropped);
        Assert.Equal([ActivityPartitions.NameOf(old)], backedUp);
        Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM activities WHERE created_at < '{old.AddMonths(1):yyyy-MM-dd}'"));
        Assert.Contains(lines, line => line.StartsWith($"dropped partition {ActivityPartitions.NameOf(old)}", StringComparison.Ordinal));
        // The new partitions are sealed like the others.
        Assert.True(await database.ScalarAsync<bool>($"SELECT relforcerowsecurity FROM pg_class WHERE relname = '{fiveAhead}'"));

        // Again: nothing left to do.
        await using (var connection = await database.OpenConnectionAsync())
        {
            report = await ActivityPartitions.MaintainAsync(connection, now, new ActivityPartitionOptions { MonthsAhead = 6, RetentionMonths = 24 },
                null, null, CancellationToken.None);
        }
        Assert.Empty(report.Created);
        Assert.Empty(report.Dropped);
    }
}

/// <summary>What the partitioned-log tests set up: a workspace, rows at chosen times.</summary>
internal static class PartitionTestData
{
    public static async Task<(Guid Workspace, Guid User)> NewWorkspaceAsync(SystemDatabaseFixture database, string name)
    {
        await using var db = database.CreateDbContext();
        var role = await db.Roles.FirstOrDefaultAsync() ?? db.Roles.Add(new Role { Name = Role.User }).Entity;
        var user = new User { Username = name + "-" + Guid.NewGuid().ToString("N")[..6], PasswordHash = "x", RoleId = role.Id };
        var workspace = new Workspace { Name = name, Slug = name + "-" + Guid.NewGuid().ToString("N")[..6], CreatedBy = user.Id };
        db.Users.Add(user);
        db.Workspaces.Add(workspace);
        await db.SaveChangesAsync();
        return (workspace.Id, user.Id);
    }

    public static Task InsertAsync(SystemDatabaseFixture database, Guid workspace, int count, string createdAtExpression) =>
        database.ExecuteAsync($"""
        INSERT INTO activities (id, workspace_id, action, entity_type, created_at)
        SELECT gen_random_uuid(), '{workspace}', 'test.partitioned', 'system', {createdAtExpression}
        FROM generate_series(1, {count}) AS i
        """);

    public static DateOnly ThisMonth => ActivityPartitions.MonthOf(DateTimeOffset.UtcNow);
}
