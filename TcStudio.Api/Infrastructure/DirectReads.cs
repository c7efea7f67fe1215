using System.Data;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The hot reads' direct path to the system database: one statement sent with Npgsql on the request's own DbContext
/// connection, the request's settings statement (timeouts, row-level security) in front of it in the same batch, read
/// straight into the response records. On a read of one row EF Core's query pipeline (query context, the execution
/// strategy's buffering reader, the settings interceptor, the materializer) cost more of the API's CPU than the
/// statement did (docs/performance.md, "Third pass"); this path sends the same SQL in the same round trips without it.
/// It is kept to the reads every request or every screen makes: the workspace access check, a workspace's details, a
/// page of procedures and a search. Everything else, and every write, goes through the DbContext.
/// </summary>
/// <remarks>
/// It joins whatever the DbContext is doing: its connection (opened here if the request has not opened it; a
/// standby's when <see cref="ReadRouting"/> swapped it in) and its transaction, if one is open. The settings statement
/// goes in front of the query in or out of a transaction (in one, sending it again is harmless: the values are the
/// request's current ones). Values are parameters ($1, $2, … of the query's own command); nothing of a caller's is
/// written into the SQL. Npgsql traces the batch as one command (its texts joined), so the command monitor and the
/// statement counts see what they saw when EF sent the settings prefixed to the query.
/// </remarks>
public readonly struct DirectRead : IAsyncDisposable
{
    private readonly TcStudioDbContext _db;
    private readonly NpgsqlBatch _batch;

    private DirectRead(TcStudioDbContext db, NpgsqlBatch batch, NpgsqlDataReader reader)
    {
        _db = db;
        _batch = batch;
        Reader = reader;
    }

    /// <summary>The query's rows (the settings statement's result is already skipped).</summary>
    public NpgsqlDataReader Reader { get; }

    /// <summary>Runs <paramref name="sql"/> with <paramref name="values"/> as $1, $2, …; dispose the result to release the connection.</summary>
    public static Task<DirectRead> ExecuteAsync(TcStudioDbContext db, string sql, CancellationToken cancellationToken,
        params object[] values) =>
        ExecuteAsync(db, [Command(sql, values)], cancellationToken);

    /// <summary>A statement of a batch, with <paramref name="values"/> as its $1, $2, ….</summary>
    public static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        return command;
    }

    /// <summary>
    /// Runs <paramref name="commands"/> in one batch after the settings statement; the reader is at the first one's
    /// rows (<see cref="NpgsqlDataReader.NextResultAsync(CancellationToken)"/> moves to the next).
    /// </summary>
    public static async Task<DirectRead> ExecuteAsync(TcStudioDbContext db, IReadOnlyList<NpgsqlBatchCommand> commands,
        CancellationToken cancellationToken)
    {
        await db.Database.OpenConnectionAsync(cancellationToken);
        NpgsqlBatch? batch = null;
        NpgsqlDataReader? reader = null;
        try
        {
            batch = new NpgsqlBatch((NpgsqlConnection)db.Database.GetDbConnection())
            {
                Transaction = (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction(),
            };
            var settings = RequestTransactionSettings.CurrentStatement;
            if (settings is { } statement) batch.BatchCommands.Add(statement.ToBatchCommand());
            foreach (var command in commands) batch.BatchCommands.Add(command);

            reader = await batch.ExecuteReaderAsync(CommandBehavior.Default, cancellationToken);
            if (settings is not null) await reader.NextResultAsync(cancellationToken);
            return new DirectRead(db, batch, reader);
        }
        catch
        {
            if (reader is not null) await reader.DisposeAsync();
            if (batch is not null) await batch.DisposeAsync();
            await db.Database.CloseConnectionAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Reader.DisposeAsync();
        await _batch.DisposeAsync();
        await _db.Database.CloseConnectionAsync();
    }
}
