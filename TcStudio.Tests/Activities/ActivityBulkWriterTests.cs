using System.Security.Cryptography;
using Npgsql;
using TcStudio.SystemDatabase.Activities;
using TcStudio.SystemDatabase.Entities;
using TcStudio.SystemDatabase.Security;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Activities;

public sealed class ActivityBulkWriterTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    private ActivityBulkWriter CreateWriter(out NpgsqlDataSource dataSource)
    {
        dataSource = NpgsqlDataSource.Create(database.ConnectionString);
        return new ActivityBulkWriter(dataSource, TimeProvider.System);
    }

    [Fact]
    public async Task Many_rows_arrive_with_every_column_and_progress_is_reported()
    {
        var writer = CreateWriter(out var dataSource);
        await using var _ = dataSource;
        var at = new DateTimeOffset(2026, 3, 4, 5, 6, 7, TimeSpan.Zero);
        var entity = Guid.CreateVersion7();
        var reports = new List<long>();

        var written = await writer.AppendAsync(
            Enumerable.Range(0, 25_000).Select(i => new ActivityRecord(null, null, "system.bulk_tested", "system",
                i == 0 ? entity : null, i == 0 ? """{"n": 1}""" : null, i == 0 ? at : null)),
            new Progress<long>(reports.Add), progressEvery: 10_000);

        Assert.Equal(25_000UL, written);
        Assert.Equal(25_000L, await database.ScalarAsync<long>("SELECT count(*) FROM activities WHERE action = 'system.bulk_tested'"));
        Assert.Equal(1L, await database.ScalarAsync<long>(
            "SELECT count(*) FROM activities WHERE entity_id = @e AND details->>'n' = '1' AND created_at = @at",
            ("e", entity), ("at", at)));
        await Task.Delay(100); // Progress<T> reports on the thread pool
        Assert.Contains(25_000L, reports);
    }

    [Fact]
    public async Task A_bad_row_fails_the_whole_load_and_writes_nothing()
    {
        var writer = CreateWriter(out var dataSource);
        await using var _ = dataSource;
        var rows = Enumerable.Range(0, 1000).Select(i =>
            new ActivityRecord(null, null, i == 500 ? "Not A Valid Action" : "system.all_or_nothing", "system"));

        var error = await Assert.ThrowsAsync<PostgresException>(() => writer.AppendAsync(rows));

        Assert.Equal(PostgresErrorCodes.CheckViolation, error.SqlState);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM activities WHERE action = 'system.all_or_nothing'"));
    }

    [Fact]
    public async Task As_the_app_role_rows_reach_every_workspace_through_a_staging_table_under_row_level_security()
    {
        var names = SystemRoleNames.For(database.DatabaseName);
        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        await SystemDatabaseRoles.EnsureAsync(database.ConnectionString, names, new SystemDatabaseRoles.Passwords(null, password, null));
        User user;
        var first = new Workspace { Name = "First", Slug = "bulk-first", CreatedBy = Guid.Empty };
        var second = new Workspace { Name = "Second", Slug = "bulk-second", CreatedBy = Guid.Empty };
        await using (var db = database.CreateDbContext())
        {
            var role = new Role { Name = Role.User };
            user = new User { Username = "bulk-writer", PasswordHash = "x", RoleId = role.Id };
            first.CreatedBy = second.CreatedBy = user.Id;
            db.AddRange(role, user, first, second);
            await db.SaveChangesAsync();
        }
        await using var asApp = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(database.ConnectionString)
        {
            Username = names.App, Password = password,
        }.ConnectionString);
        var writer = new ActivityBulkWriter(asApp, TimeProvider.System);

        var written = await writer.AppendAsync(Enumerable.Range(0, 3000).Select(i => new ActivityRecord(
            (i % 3) switch { 0 => first.Id, 1 => second.Id, _ => null }, user.Id, "system.rls_bulk", "system")));

        Assert.Equal(3000UL, written);
        Assert.Equal(["1000", "1000", "1000"], await database.ColumnAsync(
            "SELECT count(*) FROM activities WHERE action = 'system.rls_bulk' GROUP BY workspace_id ORDER BY workspace_id NULLS LAST"));
        // The app role itself cannot COPY into the table: that is what the staging table is for.
        await using var connection = await asApp.OpenConnectionAsync();
        var refused = await Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await using var importer = await connection.BeginBinaryImportAsync(ActivityBulkWriter.CopyCommand);
        });
        Assert.Contains("row-level security", refused.MessageText);
    }
}
