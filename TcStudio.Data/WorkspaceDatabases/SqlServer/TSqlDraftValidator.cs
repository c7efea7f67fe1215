using Microsoft.SqlServer.TransactSql.ScriptDom;

namespace TcStudio.Data.WorkspaceDatabases.SqlServer;

/// <summary>
/// Static checks of a T-SQL draft with ScriptDom's TSql160Parser, needing no server: syntax errors with line and
/// column; exactly one CREATE [OR ALTER] PROCEDURE whose name matches the draft (dbo when unqualified, never
/// another database or server); and the refused constructs, each reported at its line: USE, xp_cmdshell,
/// sp_configure, OPENROWSET, OPENDATASOURCE, OPENQUERY, BULK INSERT, CREATE/ALTER/DROP LOGIN|USER|DATABASE,
/// GRANT/REVOKE/DENY, SHUTDOWN, RECONFIGURE, EXECUTE AS LOGIN and EXECUTE ... AT a linked server. Dynamic SQL in
/// string literals (EXEC (N'...')) is checked the same way.
/// </summary>
public static class TSqlDraftValidator
{
    public const string DefaultSchema = "dbo";

    private static readonly HashSet<string> RefusedProcedures = new(StringComparer.OrdinalIgnoreCase)
    {
        "xp_cmdshell", "sp_configure",
    };

    /// <summary>The result of checking a draft; when valid, <see cref="DeployText"/> is the statement as CREATE OR ALTER.</summary>
    public sealed record Result(SqlValidation Validation, string? DeployText, ProcedureStatementBody? Procedure);

    public static TSqlScript Parse(string sql, out IList<ParseError> errors)
    {
        var parser = new TSql160Parser(initialQuotedIdentifiers: true);
        using var reader = new StringReader(sql);
        return (TSqlScript)parser.Parse(reader, out errors);
    }

    public static Result Check(string procedureName, string sql)
    {
        var script = Parse(sql, out var errors);
        if (errors.Count > 0)
        {
            return Invalid(errors.Select(e => new SqlProblem(e.Line, e.Column, e.Message)).ToList());
        }

        var problems = new List<SqlProblem>();
        script.Accept(new RefusedConstructs(problems, lineOffset: 0));

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
            problems.Add(new SqlProblem(name.StartLine, name.StartColumn, "The procedure must be created in the workspace database itself (no database or server prefix)."));
        }
        else if (!string.Equals(name.SchemaIdentifier?.Value ?? DefaultSchema, expected.Schema ?? DefaultSchema, StringComparison.OrdinalIgnoreCase)
                 || !string.Equals(name.BaseIdentifier.Value, expected.Name, StringComparison.OrdinalIgnoreCase))
        {
            var actual = name.SchemaIdentifier is null ? name.BaseIdentifier.Value : $"{name.SchemaIdentifier.Value}.{name.BaseIdentifier.Value}";
            problems.Add(new SqlProblem(name.StartLine, name.StartColumn,
                $"The procedure is named '{actual}' but the draft is '{procedureName}'; they must match."));
        }

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

    private static string Describe(TSqlStatement statement)
    {
        var name = statement.GetType().Name;
        if (name.EndsWith("Statement", StringComparison.Ordinal)) name = name[..^"Statement".Length];
        return System.Text.RegularExpressions.Regex.Replace(name, "(?<=[a-z])(?=[A-Z])", " ").ToUpperInvariant() + " statement";
    }

    /// <summary>Finds every refused construct anywhere in the tree (the visitor walks nested blocks, IFs, TRY/CATCH...).</summary>
    private sealed class RefusedConstructs(List<SqlProblem> problems, int lineOffset) : TSqlFragmentVisitor
    {
        private void Refuse(TSqlFragment fragment, string construct) =>
            problems.Add(new SqlProblem(fragment.StartLine + lineOffset, fragment.StartColumn, $"{construct} is not allowed in a published procedure."));

        public override void Visit(TSqlFragment fragment)
        {
            switch (fragment)
            {
                case UseStatement: Refuse(fragment, "USE"); break;
                case OpenRowsetTableReference or BulkOpenRowset or InternalOpenRowset or OpenRowsetCosmos: Refuse(fragment, "OPENROWSET"); break;
                case AdHocTableReference or AdHocDataSource: Refuse(fragment, "OPENDATASOURCE"); break;
                case OpenQueryTableReference: Refuse(fragment, "OPENQUERY"); break;
                case BulkInsertStatement: Refuse(fragment, "BULK INSERT"); break;
                case CreateLoginStatement: Refuse(fragment, "CREATE LOGIN"); break;
                case AlterLoginStatement: Refuse(fragment, "ALTER LOGIN"); break;
                case DropLoginStatement: Refuse(fragment, "DROP LOGIN"); break;
                case CreateUserStatement: Refuse(fragment, "CREATE USER"); break;
                case AlterUserStatement: Refuse(fragment, "ALTER USER"); break;
                case DropUserStatement: Refuse(fragment, "DROP USER"); break;
                case CreateDatabaseStatement: Refuse(fragment, "CREATE DATABASE"); break;
                case AlterDatabaseStatement: Refuse(fragment, "ALTER DATABASE"); break;
                case DropDatabaseStatement: Refuse(fragment, "DROP DATABASE"); break;
                case GrantStatement or GrantStatement80: Refuse(fragment, "GRANT"); break;
                case RevokeStatement or RevokeStatement80: Refuse(fragment, "REVOKE"); break;
                case DenyStatement or DenyStatement80: Refuse(fragment, "DENY"); break;
                case ShutdownStatement: Refuse(fragment, "SHUTDOWN"); break;
                case ReconfigureStatement: Refuse(fragment, "RECONFIGURE"); break;
                case ExecuteAsStatement { ExecuteContext.Kind: ExecuteAsOption.Login }: Refuse(fragment, "EXECUTE AS LOGIN"); break;
                case ExecuteSpecification specification: CheckExecute(specification); break;
            }
            base.Visit(fragment);
        }

        private void CheckExecute(ExecuteSpecification specification)
        {
            if (specification.ExecuteContext is { Kind: ExecuteAsOption.Login }) Refuse(specification, "EXECUTE ... AS LOGIN");
            if (specification.LinkedServer is not null) Refuse(specification, "EXECUTE ... AT a linked server");
            switch (specification.ExecutableEntity)
            {
                case ExecutableProcedureReference { ProcedureReference.ProcedureReference.Name: { } name }
                    when RefusedProcedures.Contains(name.BaseIdentifier.Value):
                    Refuse(specification, name.BaseIdentifier.Value.ToLowerInvariant());
                    break;
                case ExecutableStringList { Strings: var strings } when strings.All(s => s is StringLiteral):
                    // Dynamic SQL written out in full is checked like the rest; built from variables it cannot be.
                    var dynamic = string.Concat(strings.Cast<StringLiteral>().Select(s => s.Value));
                    var script = Parse(dynamic, out var errors);
                    if (errors.Count == 0) script.Accept(new RefusedConstructs(problems, specification.StartLine - 1 + lineOffset));
                    break;
            }
        }
    }
}
