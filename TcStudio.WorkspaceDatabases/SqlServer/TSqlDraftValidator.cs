using Microsoft.SqlServer.TransactSql.ScriptDom;

namespace TcStudio.WorkspaceDatabases.SqlServer;

/// <summary>
/// Static checks of a T-SQL draft with ScriptDom's TSql160Parser, needing no server: syntax errors with line and
/// column; exactly one CREATE [OR ALTER] PROCEDURE whose name matches the draft (dbo when unqualified, never
/// another database or server, never a reserved schema); and an allow-list over the procedure's tree: only the
/// statements in <see cref="ProcedureBody"/> may appear in its body, and inside them no dynamic SQL of any form
/// (EXEC of a string or a variable, sp_executesql, EXEC @procedure), no other database or server (three- and
/// four-part names, linked servers, OPENROWSET/OPENQUERY/OPENDATASOURCE), no server-scoped catalog views, no
/// extended, OLE Automation or other system procedures, no EXECUTE AS, REVERT or SETUSER, and no global temporary
/// tables. Every refusal is reported at its line. The server is the second line: procedures run as the database's
/// own execute user (EXECUTE AS USER … WITH NO REVERT), whose rights end at its database.
/// </summary>
public static class TSqlDraftValidator
{
    public const string DefaultSchema = "dbo";

    /// <summary>The result of checking a draft; when valid, <see cref="DeployText"/> is the statement as CREATE OR ALTER.</summary>
    public sealed record Result(SqlValidation Validation, string? DeployText, ProcedureStatementBody? Procedure);

    /// <summary>
    /// ScriptDom's parser and the visitors recurse once per level of nesting, and a stack overflow ends the process
    /// (it cannot be caught): drafts nested deeper than this (parentheses, BEGIN … END, CASE … END) are refused from
    /// the token stream (read without recursion) before parsing, and parsing and visiting run on a thread with a
    /// stack large enough for what remains (<see cref="LargeStackBytes"/>; measured: 10,000 nested IFs need under 16 MB).
    /// </summary>
    public const int MaxNesting = 200;

    /// <summary>IF and WHILE nest without brackets; their number bounds that nesting.</summary>
    public const int MaxConditionals = 5000;

    private const int LargeStackBytes = 64 * 1024 * 1024;

    [ThreadStatic] private static bool _onLargeStack;

    /// <summary>Runs <paramref name="work"/> on a thread with a large stack (or right here if this is one already).</summary>
    private static T OnLargeStack<T>(Func<T> work)
    {
        if (_onLargeStack) return work();
        T result = default!;
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            _onLargeStack = true;
            try { result = work(); }
            catch (Exception e) { failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e); }
        }, LargeStackBytes) { IsBackground = true, Name = "T-SQL parser" };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }

    public static TSqlScript Parse(string sql, out IList<ParseError> errors)
    {
        var (script, found) = OnLargeStack(() =>
        {
            var parser = new TSql160Parser(initialQuotedIdentifiers: true);
            IList<ParseError> parseErrors;
            using (var tokensReader = new StringReader(sql))
            {
                if (TooDeep(parser.GetTokenStream(tokensReader, out parseErrors)) is { } deep) return (new TSqlScript(), (IList<ParseError>)[deep]);
            }
            if (parseErrors.Count > 0) return (new TSqlScript(), parseErrors);
            using var reader = new StringReader(sql);
            var parsed = (TSqlScript)parser.Parse(reader, out parseErrors);
            return (parsed, parseErrors);
        });
        errors = found;
        return script;
    }

    /// <summary>A parse error where the draft nests deeper than <see cref="MaxNesting"/>, or holds too many IF/WHILE.</summary>
    private static ParseError? TooDeep(IList<TSqlParserToken> tokens)
    {
        var depth = 0;
        var conditionals = 0;
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            switch (token.TokenType)
            {
                case TSqlTokenType.LeftParenthesis or TSqlTokenType.Case:
                case TSqlTokenType.Begin when !OpensWithoutEnd(tokens, i):
                    if (++depth > MaxNesting)
                    {
                        return new ParseError(0, token.Offset, token.Line, token.Column,
                            $"The draft nests deeper than {MaxNesting} levels (parentheses, BEGIN … END, CASE … END).");
                    }
                    break;
                case TSqlTokenType.RightParenthesis or TSqlTokenType.End:
                    depth = Math.Max(0, depth - 1);
                    break;
                case TSqlTokenType.If or TSqlTokenType.While:
                    if (++conditionals > MaxConditionals)
                    {
                        return new ParseError(0, token.Offset, token.Line, token.Column,
                            $"The draft holds more than {MaxConditionals} IF and WHILE statements.");
                    }
                    break;
            }
        }
        return null;
    }

    /// <summary>BEGIN TRAN[SACTION], DISTRIBUTED, DIALOG, CONVERSATION: a BEGIN that no END closes.</summary>
    private static bool OpensWithoutEnd(IList<TSqlParserToken> tokens, int begin)
    {
        for (var j = begin + 1; j < tokens.Count; j++)
        {
            var token = tokens[j];
            if (token.TokenType is TSqlTokenType.WhiteSpace or TSqlTokenType.SingleLineComment or TSqlTokenType.MultilineComment) continue;
            return token.TokenType is TSqlTokenType.Tran or TSqlTokenType.Transaction or TSqlTokenType.Distributed
                || (token.TokenType == TSqlTokenType.Identifier && token.Text.ToUpperInvariant() is "DIALOG" or "CONVERSATION");
        }
        return false;
    }

    public static Result Check(string procedureName, string sql) => OnLargeStack(() => CheckOnThisStack(procedureName, sql));

    private static Result CheckOnThisStack(string procedureName, string sql)
    {
        var script = Parse(sql, out var errors);
        if (errors.Count > 0)
        {
            return Invalid(errors.Select(e => new SqlProblem(e.Line, e.Column, e.Message)).ToList());
        }

        var problems = new List<SqlProblem>();

        var statements = script.Batches.SelectMany(b => b.Statements).ToList();
        if (statements.Count == 0)
        {
            problems.Add(new SqlProblem(1, 1, "The draft is empty: expected CREATE [OR ALTER] PROCEDURE."));
            return Invalid(problems);
        }
        var procedures = statements.OfType<ProcedureStatementBody>()
            .Where(s => s is CreateProcedureStatement or CreateOrAlterProcedureStatement).ToList();
        foreach (var other in statements.Where(s => s is not (CreateProcedureStatement or CreateOrAlterProcedureStatement)))
        {
            problems.Add(new SqlProblem(other.StartLine, other.StartColumn,
                $"Only one CREATE [OR ALTER] PROCEDURE may be published; this {Describe(other)} is not allowed here."));
        }
        if (procedures.Count > 1)
        {
            problems.Add(new SqlProblem(procedures[1].StartLine, procedures[1].StartColumn,
                $"The draft must hold exactly one CREATE [OR ALTER] PROCEDURE; found {procedures.Count}."));
        }
        if (procedures.Count == 0)
        {
            if (problems.Count == 0) problems.Add(new SqlProblem(1, 1, "Expected CREATE [OR ALTER] PROCEDURE."));
            return Invalid(problems);
        }

        var procedure = procedures[0];
        var name = procedure.ProcedureReference.Name;
        var expected = ProcedureName.Parse(procedureName);
        if (name.ServerIdentifier is not null || name.DatabaseIdentifier is not null)
        {
            problems.Add(new SqlProblem(name.StartLine, name.StartColumn,
                "The procedure must be created in the workspace database itself (no database or server prefix)."));
        }
        else if (!string.Equals(name.SchemaIdentifier?.Value ?? DefaultSchema, expected.Schema ?? DefaultSchema, StringComparison.OrdinalIgnoreCase)
                 || !string.Equals(name.BaseIdentifier.Value, expected.Name, StringComparison.OrdinalIgnoreCase))
        {
            var actual = name.SchemaIdentifier is null ? name.BaseIdentifier.Value : $"{name.SchemaIdentifier.Value}.{name.BaseIdentifier.Value}";
            problems.Add(new SqlProblem(name.StartLine, name.StartColumn,
                $"The procedure is named '{actual}' but the draft is '{procedureName}'; they must match."));
        }
        else if (ReservedSchemas.Contains(expected.SchemaOr(DefaultSchema)))
        {
            problems.Add(new SqlProblem(name.StartLine, name.StartColumn,
                $"Schema '{expected.Schema}' is reserved; choose another schema for the procedure."));
        }
        problems.AddRange(ProcedureBody.Check(procedure));

        if (problems.Count > 0) return Invalid(problems);
        return new Result(SqlValidation.Valid, ToCreateOrAlter(script, procedure, sql), procedure);

        static Result Invalid(List<SqlProblem> found) =>
            new(new SqlValidation(found.Distinct().OrderBy(p => p.Line).ThenBy(p => p.Column).ToList()), null, null);
    }

    /// <summary>The statement's own text, with CREATE turned into CREATE OR ALTER (comments and layout kept).</summary>
    public static string ToCreateOrAlter(TSqlScript script, TSqlStatement statement, string sql)
    {
        var text = sql.Substring(statement.StartOffset, statement.FragmentLength);
        if (statement is not CreateProcedureStatement) return text;
        var create = script.ScriptTokenStream[statement.FirstTokenIndex];
        var split = create.Offset - statement.StartOffset + create.Text.Length;
        return text[..split] + " OR ALTER" + text[split..];
    }

    /// <summary>A stored definition (OBJECT_DEFINITION) made re-runnable over whatever exists now.</summary>
    public static string DefinitionAsCreateOrAlter(string definition)
    {
        var script = Parse(definition, out var errors);
        var statement = script.Batches.SelectMany(b => b.Statements).FirstOrDefault();
        return errors.Count > 0 || statement is null ? definition : ToCreateOrAlter(script, statement, definition);
    }

    /// <summary>Names of a procedure's parameters that declare a default (SQL Server's catalog keeps these only for CLR procedures).</summary>
    public static HashSet<string> ParametersWithDefaults(string definition)
    {
        var script = Parse(definition, out _);
        var procedure = script.Batches.SelectMany(b => b.Statements).OfType<ProcedureStatementBody>().FirstOrDefault();
        return procedure is null
            ? []
            : procedure.Parameters.Where(p => p.Value is not null).Select(p => p.VariableName.Value).ToHashSet(StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Schemas a draft may not create procedures in: the server's and the service's own.</summary>
    private static readonly HashSet<string> ReservedSchemas = new(StringComparer.OrdinalIgnoreCase) { "sys", "INFORMATION_SCHEMA", "tcstudio",
        "guest" };

    internal static string Describe(TSqlStatement statement)
    {
        var name = statement.GetType().Name;
        if (name.EndsWith("Statement", StringComparison.Ordinal)) name = name[..^"Statement".Length];
        return System.Text.RegularExpressions.Regex.Replace(name, "(?<=[a-z0-9])(?=[A-Z])", " ").ToUpperInvariant() + " statement";
    }
}

/// <summary>
/// The allow-list over a procedure: its options and every node of its body. A statement type not listed in
/// <see cref="IsAllowed"/> is refused wherever it appears (nested in IF, WHILE, TRY/CATCH, BEGIN…END); the
/// constructs that reach beyond the database are refused in whatever statement holds them.
/// </summary>
internal sealed class ProcedureBody : TSqlFragmentVisitor
{
    private readonly List<SqlProblem> _problems = [];

    /// <summary>
    /// Table aliases and table names the procedure uses: <c>alias.column.value(…)</c> (an XML, spatial or CLR method)
    /// looks exactly like <c>database.schema.function(…)</c> in the tree, and only these tell them apart.
    /// </summary>
    private readonly HashSet<string> _tables = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Method calls on columns that ScriptDom reads as three-part names (<c>alias.column.nodes(…)</c> in FROM).</summary>
    private readonly HashSet<SchemaObjectName> _methodCalls = [];

    private sealed class TableNames(HashSet<string> tables) : TSqlFragmentVisitor
    {
        public override void Visit(TableReferenceWithAlias node)
        {
            if (node.Alias is { } alias) tables.Add(alias.Value);
            if (node is NamedTableReference { SchemaObject.BaseIdentifier: { } name }) tables.Add(name.Value);
        }

        public override void Visit(CommonTableExpression node) => tables.Add(node.ExpressionName.Value);
    }

    /// <summary>System procedures a body may call: application locks (in this database) and the session's own context.</summary>
    private static readonly HashSet<string> AllowedSystemProcedures = new(StringComparer.OrdinalIgnoreCase)
    {
        "sp_getapplock", "sp_releaseapplock", "sp_set_session_context",
    };

    /// <summary>sys catalog views that describe the server rather than this database (as sys.name).</summary>
    private static readonly HashSet<string> ServerScopedViews = new(StringComparer.OrdinalIgnoreCase)
    {
        "databases", "master_files", "configurations", "servers", "linked_logins", "remote_logins", "credentials", "endpoints",
        "sql_logins", "login_token", "messages", "traces", "trace_events", "availability_groups",
    };

    /// <summary>Compatibility views of the server's state, reachable unqualified too.</summary>
    private static readonly HashSet<string> ServerScopedCompatibilityViews = new(StringComparer.OrdinalIgnoreCase)
    {
        "sysdatabases", "syslogins", "sysprocesses", "sysservers", "sysremotelogins", "sysconfigures", "syscurconfigs",
        "sysaltfiles", "sysdevices", "sysoledbusers", "syslockinfo", "sysperfinfo", "syscacheobjects",
    };

    public static IReadOnlyList<SqlProblem> Check(ProcedureStatementBody procedure)
    {
        var body = new ProcedureBody();
        if (procedure.MethodSpecifier is not null) body.Refuse(procedure.MethodSpecifier, "EXTERNAL NAME (a CLR assembly)");
        if (procedure.IsForReplication) body.Refuse(procedure, "FOR REPLICATION");
        if (procedure.ProcedureReference.Number is not null) body.Refuse(procedure.ProcedureReference, "A numbered procedure (;n)");
        foreach (var option in procedure.Options)
        {
            switch (option)
            {
                case ExecuteAsProcedureOption { ExecuteAs.ExecuteAsOption: ExecuteAsOption.Caller }:
                    break;
                case ExecuteAsProcedureOption executeAs:
                    body.Refuse(option, $"WITH EXECUTE AS {executeAs.ExecuteAs.ExecuteAsOption.ToString().ToUpperInvariant()} (procedures run as the "
                        + "environment's execute user)");
                    break;
                case { OptionKind: ProcedureOptionKind.Encryption }:
                    body.Refuse(option, "WITH ENCRYPTION (the service reads definitions back to restore them)");
                    break;
            }
        }
        procedure.StatementList?.Accept(new TableNames(body._tables));
        foreach (var parameter in procedure.Parameters) parameter.Accept(body);
        procedure.StatementList?.Accept(body);
        return body._problems;
    }

    private void Refuse(TSqlFragment fragment, string construct) =>
        _problems.Add(new SqlProblem(fragment.StartLine, fragment.StartColumn, $"{construct} is not allowed in a published procedure."));

    public override void Visit(TSqlFragment fragment)
    {
        switch (fragment)
        {
            case TSqlStatement statement when !IsAllowed(statement, out var construct):
                Refuse(statement, construct);
                break;
            case ExecuteSpecification execute:
                CheckExecute(execute);
                break;
            case SchemaObjectName name:
                CheckName(name);
                break;
            case FunctionCall { CallTarget: MultiPartIdentifierCallTarget { MultiPartIdentifier.Count: > 1 } target } call
                when !_tables.Contains(target.MultiPartIdentifier.Identifiers[0].Value):
                Refuse(call, $"'{target.MultiPartIdentifier.Identifiers[0].Value}' (another database: three-part function names)");
                break;
            case SchemaObjectFunctionTableReference { SchemaObject: { DatabaseIdentifier: { } first, ServerIdentifier: null } name }
                when _tables.Contains(first.Value):
                _methodCalls.Add(name); // alias.column.nodes(…)
                break;
            case ColumnReferenceExpression { MultiPartIdentifier.Count: > 3 } column:
                Refuse(column, $"'{column.MultiPartIdentifier.Identifiers[0].Value}' (another database or server: four-part column names)");
                break;
            case OpenRowsetTableReference or BulkOpenRowset or InternalOpenRowset or OpenRowsetCosmos:
                Refuse(fragment, "OPENROWSET");
                break;
            case AdHocTableReference or AdHocDataSource:
                Refuse(fragment, "OPENDATASOURCE");
                break;
            case OpenQueryTableReference:
                Refuse(fragment, "OPENQUERY");
                break;
        }
        base.Visit(fragment);
    }

    /// <summary>The statements a procedure body may hold, with the conditions some of them need.</summary>
    private static bool IsAllowed(TSqlStatement statement, out string construct)
    {
        construct = TSqlDraftValidator.Describe(statement);
        switch (statement)
        {
            case SelectStatement select:
                construct = "SELECT … INTO a permanent table (DDL)";
                return select.Into is null || IsLocalTemp(select.Into);
            case InsertStatement or UpdateStatement or DeleteStatement or MergeStatement or TruncateTableStatement:
            case DeclareVariableStatement or DeclareTableVariableStatement or SetVariableStatement:
            case IfStatement or WhileStatement or BeginEndBlockStatement or TryCatchStatement:
            case ReturnStatement or BreakStatement or ContinueStatement or GoToStatement or LabelStatement:
            case ThrowStatement or PrintStatement:
            case CommitTransactionStatement or RollbackTransactionStatement or SaveTransactionStatement:
            case PredicateSetStatement or SetTransactionIsolationLevelStatement or SetRowCountStatement or SetCommandStatement:
            case SetTextSizeStatement or SetStatisticsStatement or SetIdentityInsertStatement or SetOffsetsStatement:
            case DeclareCursorStatement or OpenCursorStatement or FetchCursorStatement or CloseCursorStatement or DeallocateCursorStatement:
            case ExecuteStatement:
            case IndexDefinition: // an index inside CREATE TABLE (a temporary one, checked there)
                return true;
            case RaiseErrorStatement raise:
                construct = "RAISERROR … WITH LOG (the server's error log)";
                return !raise.RaiseErrorOptions.HasFlag(RaiseErrorOptions.Log);
            case BeginTransactionStatement begin:
                construct = "BEGIN DISTRIBUTED TRANSACTION";
                return !begin.Distributed;
            case WaitForStatement wait:
                construct = "WAITFOR with a statement (Service Broker)";
                return wait.WaitForOption is WaitForOption.Delay or WaitForOption.Time;
            case CreateTableStatement create:
                construct = "CREATE TABLE of a permanent table (only #temporary tables)";
                return IsLocalTemp(create.SchemaObjectName) && create.SelectStatement is null && create.CloneSource is null;
            case DropTableStatement drop:
                construct = "DROP TABLE of a permanent table (only #temporary tables)";
                return drop.Objects.All(IsLocalTemp);
            case CreateIndexStatement index:
                construct = "CREATE INDEX on a permanent table (only #temporary tables)";
                return IsLocalTemp(index.OnName);
            case AlterTableStatement alter:
                construct = "ALTER TABLE of a permanent table (only #temporary tables)";
                return IsLocalTemp(alter.SchemaObjectName);
            case ExecuteAsStatement executeAs:
                construct = $"EXECUTE AS {executeAs.ExecuteContext.Kind.ToString().ToUpperInvariant()} (procedures run as the "
                    + "environment's execute user)";
                return false;
            default:
                return false;
        }
    }

    private static bool IsLocalTemp(SchemaObjectName name) =>
        name.Count == 1 && name.BaseIdentifier.Value.StartsWith('#') && !name.BaseIdentifier.Value.StartsWith("##", StringComparison.Ordinal);

    private void CheckName(SchemaObjectName name)
    {
        if (_methodCalls.Contains(name)) return;
        if (name.ServerIdentifier is not null || name.DatabaseIdentifier is not null)
        {
            var where = (name.ServerIdentifier ?? name.DatabaseIdentifier)!.Value;
            Refuse(name, $"'{where}' (another database or server: three- and four-part names)");
            return;
        }
        var baseName = name.BaseIdentifier?.Value ?? "";
        if (baseName.StartsWith("##", StringComparison.Ordinal))
        {
            Refuse(name, $"The global temporary table {baseName} (visible to every session on the server)");
            return;
        }
        var schema = name.SchemaIdentifier?.Value;
        var inSys = schema?.Equals("sys", StringComparison.OrdinalIgnoreCase) == true;
        var serverScoped = inSys
            ? ServerScopedViews.Contains(baseName) || ServerScopedCompatibilityViews.Contains(baseName)
              || baseName.StartsWith("dm_", StringComparison.OrdinalIgnoreCase) || baseName.StartsWith("server_", StringComparison.OrdinalIgnoreCase)
              || baseName.StartsWith("fn_", StringComparison.OrdinalIgnoreCase)
            : (schema is null || schema.Equals("dbo", StringComparison.OrdinalIgnoreCase)) && ServerScopedCompatibilityViews.Contains(baseName);
        if (serverScoped) Refuse(name, $"The server-level object {(schema is null ? "" : schema + ".")}{baseName}");
    }

    private void CheckExecute(ExecuteSpecification execute)
    {
        if (execute.ExecuteContext is not null)
        {
            Refuse(execute, $"EXECUTE … AS {execute.ExecuteContext.Kind.ToString().ToUpperInvariant()}");
        }
        if (execute.LinkedServer is not null) Refuse(execute, "EXECUTE … AT a linked server");
        switch (execute.ExecutableEntity)
        {
            case ExecutableStringList:
                Refuse(execute, "Dynamic SQL (EXEC of a string or of a variable holding one)");
                break;
            case ExecutableProcedureReference { ProcedureReference.ProcedureVariable: not null }:
                Refuse(execute, "EXEC @variable (a procedure chosen at run time)");
                break;
            case ExecutableProcedureReference { ProcedureReference.ProcedureReference.Name: { } name }:
                var procedure = name.BaseIdentifier.Value;
                if (procedure.Equals("sp_executesql", StringComparison.OrdinalIgnoreCase))
                {
                    Refuse(execute, "Dynamic SQL (sp_executesql)");
                }
                else if (procedure.StartsWith("xp_", StringComparison.OrdinalIgnoreCase))
                {
                    Refuse(execute, $"The extended stored procedure {procedure}");
                }
                else if (procedure.StartsWith("sp_OA", StringComparison.OrdinalIgnoreCase))
                {
                    Refuse(execute, $"The OLE Automation procedure {procedure}");
                }
                else if ((procedure.StartsWith("sp_", StringComparison.OrdinalIgnoreCase)
                          || name.SchemaIdentifier?.Value.Equals("sys", StringComparison.OrdinalIgnoreCase) == true)
                         && !AllowedSystemProcedures.Contains(procedure))
                {
                    Refuse(execute, $"The system procedure {procedure}");
                }
                break;
        }
    }
}
