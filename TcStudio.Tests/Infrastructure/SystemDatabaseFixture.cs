using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.SystemDatabase;

namespace TcStudio.Tests.Infrastructure;

/// <summary>A fresh, migrated, unseeded system database for one test class.</summary>
public class SystemDatabaseFixture(PostgresServer server) : IAsyncLifetime
{
    public PostgresServer Server { get; } = server;
    public string DatabaseName { get; protected set; } = "";
    public string ConnectionString => Server.ConnectionString(DatabaseName);

    public virtual async ValueTask InitializeAsync() => DatabaseName = await Server.CreateDatabaseAsync();

    public virtual async ValueTask DisposeAsync()
    {
        await Server.DropDatabaseAsync(DatabaseName);
        // The roles a test or fixture made for this database (the roles step) are server-wide: once it is gone, nothing of theirs is left.
        if (DatabaseName.Length > 0) await Server.DropRolesAsync(TcStudio.SystemDatabase.Security.SystemRoleNames.For(DatabaseName).All);
    }

    /// <summary>A context configured like the product's (naming, history table, audit interceptor).</summary>
    public TcStudioDbContext CreateDbContext(TimeProvider? clock = null)
    {
        var options = new DbContextOptionsBuilder<TcStudioDbContext>()
            .UseNpgsql(ConnectionString, npgsql => npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable))
            .AddInterceptors(new AuditTimestampsInterceptor(clock ?? TimeProvider.System))
            ;
        TcStudioDataExtensions.ConfigureContext(options);
        return new TcStudioDbContext(options.Options);
    }

    public async Task<NpgsqlConnection> OpenConnectionAsync()
    {
        var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>How many rows <c>SELECT count(*) FROM <paramref name="from"/></c> counts (a table, optionally with a WHERE).</summary>
    public Task<long> RowsAsync(string from) => ScalarAsync<long>($"SELECT count(*) FROM {from}");

    /// <summary>The id of the user named <paramref name="username"/> (ignoring case, as sign-in does).</summary>
    public Task<Guid> UserIdAsync(string username) =>
        ScalarAsync<Guid>("SELECT id FROM users WHERE lower(username) = lower(@u)", ("u", username));

    public async Task<int> ExecuteAsync(string sql)
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteNonQueryAsync();
    }

    public async Task<List<string>> ColumnAsync(string sql)
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<string>();
        while (await reader.ReadAsync()) values.Add(reader.IsDBNull(0) ? "<null>" : Convert.ToString(reader.GetValue(0))!);
        return values;
    }
}

/// <summary>A fresh, empty (not migrated) database for one test class.</summary>
public sealed class EmptyDatabaseFixture(PostgresServer server) : SystemDatabaseFixture(server)
{
    public override async ValueTask InitializeAsync() => DatabaseName = await Server.CreateDatabaseAsync(migrated: false);
}
