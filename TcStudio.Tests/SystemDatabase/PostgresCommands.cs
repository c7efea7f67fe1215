using Npgsql;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>
/// One statement on a database a test reaches directly (not through the API), on a connection of its own that no pool
/// keeps: the arrange and inspect steps of the backup, branch, worker and local-server tests.
/// </summary>
public static class PostgresCommands
{
    public static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>The first column of the first row; SQL NULL reads as <c>default</c>.</summary>
    public static async Task<T> ScalarAsync<T>(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        var value = await command.ExecuteScalarAsync();
        return value is DBNull ? default! : (T)value!;
    }

    /// <summary><see cref="ExecuteAsync"/> in <paramref name="database"/> of the test server, as its superuser.</summary>
    public static Task ExecuteInAsync(this PostgresServer server, string database, string sql) =>
        ExecuteAsync(server.ConnectionString(database, pooling: false), sql);

    /// <summary><see cref="ScalarAsync{T}"/> in <paramref name="database"/> of the test server, as its superuser.</summary>
    public static Task<T> ScalarInAsync<T>(this PostgresServer server, string database, string sql) =>
        ScalarAsync<T>(server.ConnectionString(database, pooling: false), sql);
}
