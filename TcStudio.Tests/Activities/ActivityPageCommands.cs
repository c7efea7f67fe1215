using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.Api.Activities;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.Tests.Activities;

/// <summary>The activity page's statement (<see cref="ActivitiesApi.PageCommand"/>) as the API sends it, run by tests directly.</summary>
public static class ActivityPageCommands
{
    /// <summary>The plan of the page's statement with its parameter values, prefixed with <paramref name="explain"/>.</summary>
    public static async Task<List<string>> ExplainAsync(TcStudioDbContext db, string explain, Guid workspaceId, ActivityCursor? cursor,
        int take, ActivityMonthSpan? months)
    {
        var (sql, values) = ActivitiesApi.PageCommand(workspaceId, cursor, take, months);
        return await ReadAsync(db, explain + " " + sql, values, reader => reader.GetString(0));
    }

    /// <summary>The ids of the page's rows, in order.</summary>
    public static async Task<List<Guid>> IdsAsync(TcStudioDbContext db, Guid workspaceId, ActivityCursor? cursor, int take,
        ActivityMonthSpan? months)
    {
        var (sql, values) = ActivitiesApi.PageCommand(workspaceId, cursor, take, months);
        return await ReadAsync(db, sql, values, reader => reader.GetGuid(0));
    }

    private static async Task<List<T>> ReadAsync<T>(TcStudioDbContext db, string sql, object[] values, Func<NpgsqlDataReader, T> read)
    {
        await db.Database.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)db.Database.GetDbConnection());
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        var rows = new List<T>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(read(reader));
        return rows;
    }
}
