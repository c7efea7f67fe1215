using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Options;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// The transaction-local settings every API request's system-database work runs under: <c>lock_timeout</c>
/// (Database:LockTimeout) and <c>statement_timeout</c> (Database:RequestStatementTimeout), set with
/// <c>set_config(…, true)</c>, so they end with the transaction and never leak to the next user of a pooled
/// connection (nothing is set per session). This is the one place that knows them: the unit of work that will also
/// set the row-level-security setting (<c>tcstudio.workspace_id</c>) adds it to <see cref="Sql"/> or calls
/// <see cref="ApplyAsync"/> at the start of its transaction.
/// </summary>
public sealed class RequestTransactionSettings
{
    public RequestTransactionSettings(IOptions<DatabaseOptions> options) : this(options.Value.LockTimeout, options.Value.RequestStatementTimeout)
    {
    }

    public RequestTransactionSettings(TimeSpan lockTimeout, TimeSpan statementTimeout)
    {
        LockTimeout = lockTimeout;
        StatementTimeout = statementTimeout;
        var settings = new List<string>();
        // Zero means "no limit of ours": leave the server's (or the role's) own setting alone.
        if (lockTimeout > TimeSpan.Zero) settings.Add(SetConfig("lock_timeout", lockTimeout));
        if (statementTimeout > TimeSpan.Zero) settings.Add(SetConfig("statement_timeout", statementTimeout));
        var timeouts = settings.Count == 0 ? "" : string.Join(", ", settings) + ", ";
        var start = $"{TcStudio.DatabaseTelemetry.SqlOperationKind.SettingsPrefixMarker} SELECT {timeouts}";
        Sql = start + $"set_config('tcstudio.user_id', @{UserIdParameter}, true), set_config('tcstudio.workspace_id', @{WorkspaceIdParameter}, true)";
        BatchSql = start + "set_config('tcstudio.user_id', $1, true), set_config('tcstudio.workspace_id', $2, true)";
    }

    /// <summary>The parameters carrying the row-level-security settings (the caller's and the workspace's id, or '').</summary>
    public const string UserIdParameter = "tcstudio_user_id";
    public const string WorkspaceIdParameter = "tcstudio_workspace_id";

    /// <summary>
    /// The statement a request's settings are sent with: its text (the same for every request, so Npgsql prepares it
    /// once; with the ids written into the text, every user and workspace made another statement to prepare) and the
    /// values of its two parameters.
    /// </summary>
    public readonly record struct Statement(string Sql, string BatchSql, string UserId, string WorkspaceId)
    {
        /// <summary>Which settings a transaction holds: applied again when it changes (the request entered a workspace).</summary>
        public string Key => UserId + "|" + WorkspaceId;

        /// <summary>The statement as the first command of an Npgsql batch (positional parameters: no SQL rewriting per execution).</summary>
        public Npgsql.NpgsqlBatchCommand ToBatchCommand() => new(BatchSql)
        {
            Parameters =
            {
                new Npgsql.NpgsqlParameter<string> { TypedValue = UserId },
                new Npgsql.NpgsqlParameter<string> { TypedValue = WorkspaceId },
            },
        };

        public void AddParametersTo(DbCommand command)
        {
            Set(command, UserIdParameter, UserId);
            Set(command, WorkspaceIdParameter, WorkspaceId);
        }

        private static void Set(DbCommand command, string name, string value)
        {
            if (command.Parameters.Contains(name))
            {
                command.Parameters[name].Value = value;
                return;
            }
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.DbType = DbType.String;
            parameter.Value = value;
            command.Parameters.Add(parameter);
        }
    }

    public TimeSpan LockTimeout { get; }
    public TimeSpan StatementTimeout { get; }

    /// <summary>
    /// The settings statement: the timeouts (numbers we format) and the row-level-security settings, whose values are
    /// the parameters <see cref="UserIdParameter"/> and <see cref="WorkspaceIdParameter"/> (one statement returning one row).
    /// The marker lets the command monitor classify a prefixed command by what follows (SqlOperationKind).
    /// </summary>
    public string Sql { get; }

    /// <summary><see cref="Sql"/> with positional parameters ($1 the user, $2 the workspace), for a batch of its own.</summary>
    public string BatchSql { get; }

    /// <summary>Sets them for the rest of <paramref name="transaction"/> (one round trip; Npgsql sends BEGIN with it).</summary>
    public static async Task ApplyAsync(Statement statement, DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = statement.Sql;
        command.Transaction = transaction;
        statement.AddParametersTo(command);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public static void Apply(Statement statement, DbConnection connection, DbTransaction? transaction)
    {
        using var command = connection.CreateCommand();
        command.CommandText = statement.Sql;
        command.Transaction = transaction;
        statement.AddParametersTo(command);
        command.ExecuteNonQuery();
    }

    private static string SetConfig(string name, TimeSpan value) =>
        $"set_config('{name}', '{Math.Max(1, (long)Math.Ceiling(value.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture)}ms', true)";

    private static readonly AsyncLocal<RequestTransactionSettings?> CurrentRequest = new();
    private static readonly AsyncLocal<RequestRowSecurity?> CurrentRowSecurity = new();

    /// <summary>The settings of the API request this code runs for; null outside requests (start-up, background work).</summary>
    public static RequestTransactionSettings? Current => CurrentRequest.Value;

    /// <summary>The statement to run first in this request's transactions (or in front of each statement outside one); null outside
    /// requests.</summary>
    public static Statement? CurrentStatement => CurrentRequest.Value is { } settings
        ? new Statement(settings.Sql, settings.BatchSql, (CurrentRowSecurity.Value ?? RequestRowSecurity.Anonymous).UserIdText,
            (CurrentRowSecurity.Value ?? RequestRowSecurity.Anonymous).WorkspaceIdText)
        : null;

    /// <summary>From here on (in this async flow), database work belongs to an API request.</summary>
    public static IApplicationBuilder UseRequestTransactionSettings(IApplicationBuilder app) => app.Use((context, next) =>
        context.Request.Path.StartsWithSegments("/api") ? InRequestAsync(context, next) : next(context));

    private static async Task InRequestAsync(HttpContext context, RequestDelegate next)
    {
        CurrentRequest.Value = context.RequestServices.GetRequiredService<RequestTransactionSettings>();
        CurrentRowSecurity.Value = context.RequestServices.GetRequiredService<RequestRowSecurity>();
        try
        {
            await next(context);
        }
        finally
        {
            CurrentRequest.Value = null;
            CurrentRowSecurity.Value = null;
        }
    }
}

/// <summary>
/// Applies <see cref="RequestTransactionSettings"/> to every EF Core command of an API request without an extra
/// round trip where it can:
/// <list type="bullet">
/// <item>a query or raw statement outside an explicit transaction gets the <c>set_config</c> statement prepended:
/// Npgsql sends both in one batch, which PostgreSQL runs as one transaction, so the settings hold for exactly that
/// statement (the extra result set is skipped before EF reads);</item>
/// <item>in an explicit transaction, the first command sets them for the rest of it (prepended, or sent just
/// before a SaveChanges batch, whose statements EF counts by position and must not be shifted);</item>
/// <item>a SaveChanges outside a transaction is given one (AutoTransactionBehavior.Always), so its statements are
/// bounded too.</item>
/// </list>
/// Work outside API requests (migrations at start, the size sampler) is left alone.
/// </summary>
public sealed class RequestTransactionSettingsInterceptor : DbCommandInterceptor, IDbTransactionInterceptor, ISaveChangesInterceptor
{
    // The settings last applied in a transaction (Statement.Key): applied again when they change (the request entered a workspace).
    private static readonly ConditionalWeakTable<DbTransaction, string> Applied = new();
    private static readonly ConditionalWeakTable<DbCommand, object> Prefixed = new();
    private static readonly object Marker = new();

    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData,
        InterceptionResult<DbDataReader> result)
    {
        Prepare(command, eventData, isReader: true, cancellationToken: null).GetAwaiter().GetResult();
        return result;
    }

    public override async ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        await Prepare(command, eventData, isReader: true, cancellationToken);
        return result;
    }

    /// <summary>True when the settings <paramref name="key"/> still have to be applied in <paramref name="transaction"/> (and records them as
    /// applied).</summary>
    private static bool MarkApplied(DbTransaction transaction, string key)
    {
        if (Applied.TryGetValue(transaction, out var applied) && applied == key) return false;
        Applied.AddOrUpdate(transaction, key);
        return true;
    }

    /// <summary>
    /// Records that the request's current settings hold in <paramref name="transaction"/> already (a direct read set
    /// them in its batch), so the next EF command sends no statement of its own for them.
    /// </summary>
    public static void RecordApplied(DbTransaction transaction)
    {
        if (RequestTransactionSettings.CurrentStatement is { } statement) MarkApplied(transaction, statement.Key);
    }

    public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
    {
        if (Prefixed.Remove(command)) result.NextResult();
        return result;
    }

    public override async ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result,
        CancellationToken cancellationToken = default)
    {
        if (Prefixed.Remove(command)) await result.NextResultAsync(cancellationToken);
        return result;
    }

    public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
    {
        Prepare(command, eventData, isReader: false, cancellationToken: null).GetAwaiter().GetResult();
        return result;
    }

    public override async ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        await Prepare(command, eventData, isReader: false, cancellationToken);
        return result;
    }

    public override async ValueTask<InterceptionResult<object>> ScalarExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<object> result, CancellationToken cancellationToken = default)
    {
        // A scalar reads the first result set, so nothing can go in front of it: inside a transaction the settings
        // are sent just before it; outside one they cannot apply (EF issues no such commands for API requests).
        if (RequestTransactionSettings.CurrentStatement is { } statement && command.Transaction is { } transaction
            && MarkApplied(transaction, statement.Key))
        {
            await RequestTransactionSettings.ApplyAsync(statement, command.Connection!, transaction, cancellationToken);
        }
        return result;
    }

    // Npgsql hands out the same transaction object again for the next transaction on a connection: the marker
    // is per transaction, so it goes when one starts or ends.
    public DbTransaction TransactionStarted(DbConnection connection, TransactionEndEventData eventData, DbTransaction result)
    {
        Applied.Remove(result);
        return result;
    }

    public ValueTask<DbTransaction> TransactionStartedAsync(DbConnection connection, TransactionEndEventData eventData, DbTransaction result,
        CancellationToken cancellationToken = default)
    {
        Applied.Remove(result);
        return ValueTask.FromResult(result);
    }

    public void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData) => Applied.Remove(transaction);

    public Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        Applied.Remove(transaction);
        return Task.CompletedTask;
    }

    public void TransactionRolledBack(DbTransaction transaction, TransactionEndEventData eventData) => Applied.Remove(transaction);

    public Task TransactionRolledBackAsync(DbTransaction transaction, TransactionEndEventData eventData,
        CancellationToken cancellationToken = default)
    {
        Applied.Remove(transaction);
        return Task.CompletedTask;
    }

    public void TransactionFailed(DbTransaction transaction, TransactionErrorEventData eventData) => Applied.Remove(transaction);

    public Task TransactionFailedAsync(DbTransaction transaction, TransactionErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Applied.Remove(transaction);
        return Task.CompletedTask;
    }

    public InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        RequireTransaction(eventData.Context);
        return result;
    }

    public ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        RequireTransaction(eventData.Context);
        return ValueTask.FromResult(result);
    }

    private static void RequireTransaction(DbContext? context)
    {
        if (context is not null && RequestTransactionSettings.Current is not null && context.Database.CurrentTransaction is null)
        {
            context.Database.AutoTransactionBehavior = AutoTransactionBehavior.Always;
        }
    }

    private static async Task Prepare(DbCommand command, CommandEventData eventData, bool isReader, CancellationToken? cancellationToken)
    {
        if (RequestTransactionSettings.CurrentStatement is not { } statement
            || command.CommandType != CommandType.Text
            || eventData.CommandSource == CommandSource.Migrations)
        {
            return;
        }
        var transaction = command.Transaction;
        if (transaction is not null && !MarkApplied(transaction, statement.Key)) return; // already set for this transaction

        if (eventData.CommandSource == CommandSource.SaveChanges)
        {
            // EF reads a SaveChanges batch's results by statement position: send the settings separately, first.
            if (transaction is null) return;
            if (cancellationToken is { } token) await RequestTransactionSettings.ApplyAsync(statement, command.Connection!, transaction, token);
            else RequestTransactionSettings.Apply(statement, command.Connection!, transaction);
            return;
        }

        command.CommandText = statement.Sql + ";\n" + command.CommandText;
        statement.AddParametersTo(command);
        if (isReader) Prefixed.AddOrUpdate(command, Marker);
    }
}

/// <summary>
/// Who a request's database work is for, as row-level security sees it: <c>tcstudio.user_id</c> (the signed-in
/// user, once authentication has run) and <c>tcstudio.workspace_id</c> (once the request entered a workspace:
/// <see cref="Workspaces.WorkspaceScopeFilter"/> after checking access, or a handler that created one). Set with
/// <c>set_config(…, true)</c> at the start of each transaction, and again when it changes in the middle of one; a
/// statement outside a transaction carries them in front of it. Never per session.
/// </summary>
public sealed class RequestRowSecurity(IHttpContextAccessor? http)
{
    public static readonly RequestRowSecurity Anonymous = new(null);

    public Guid? WorkspaceId { get; private set; }

    public Guid? UserId => http?.HttpContext?.User.FindFirst(Auth.TcStudioClaims.UserId)?.Value is { } value && Guid.TryParse(value, out var id)
        ? id : null;

    /// <summary>From here on this request's statements see (and may write) this workspace's rows.</summary>
    public void EnterWorkspace(Guid workspaceId) => WorkspaceId = workspaceId;

    internal string UserIdText => UserId?.ToString("D") ?? "";

    internal string WorkspaceIdText => WorkspaceId?.ToString("D") ?? "";
}
