namespace TcStudio.Data.WorkspaceDatabases.Postgres;

/// <summary>
/// Just enough of PostgreSQL's lexical rules to find statement boundaries and read a statement's head without a
/// database: strings ('…', E'…' with backslash escapes), quoted identifiers, dollar quoting ($tag$…$tag$), line and
/// nested block comments. Used to require exactly one CREATE [OR REPLACE] FUNCTION|PROCEDURE per draft before the
/// draft ever reaches a server.
/// </summary>
internal static class PostgresSqlText
{
    public enum TokenKind { Word, QuotedIdentifier, String, Symbol, Semicolon }

    public readonly record struct Token(TokenKind Kind, int Start, int Length, string Text);

    /// <summary>The statements of <paramref name="sql"/>: each a token list (comments dropped), empty ones skipped.</summary>
    public static List<List<Token>> Statements(string sql, out SqlProblem? error)
    {
        var statements = new List<List<Token>>();
        var current = new List<Token>();
        foreach (var token in Tokenize(sql, out error))
        {
            if (token.Kind == TokenKind.Semicolon)
            {
                if (current.Count > 0) statements.Add(current);
                current = [];
            }
            else
            {
                current.Add(token);
            }
        }
        if (current.Count > 0) statements.Add(current);
        return statements;
    }

    public static IEnumerable<Token> Tokenize(string sql, out SqlProblem? error)
    {
        var tokens = new List<Token>();
        error = null;
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            var start = i;
            if (char.IsWhiteSpace(c))
            {
                i++;
            }
            else if (c == '-' && Peek(sql, i + 1) == '-')
            {
                while (i < sql.Length && sql[i] != '\n') i++;
            }
            else if (c == '/' && Peek(sql, i + 1) == '*')
            {
                var depth = 0;
                while (i < sql.Length)
                {
                    if (sql[i] == '/' && Peek(sql, i + 1) == '*') { depth++; i += 2; }
                    else if (sql[i] == '*' && Peek(sql, i + 1) == '/') { depth--; i += 2; if (depth == 0) break; }
                    else i++;
                }
                if (depth != 0) { error = Problem(sql, start, "Unterminated /* comment."); return tokens; }
            }
            else if (c == '\'' || ((c is 'E' or 'e') && Peek(sql, i + 1) == '\'' && !IsWordChar(Peek(sql, i - 1))))
            {
                var backslashEscapes = c != '\'';
                i += backslashEscapes ? 2 : 1;
                var closed = false;
                while (i < sql.Length)
                {
                    if (backslashEscapes && sql[i] == '\\') { i += 2; continue; }
                    if (sql[i] == '\'')
                    {
                        if (Peek(sql, i + 1) == '\'') { i += 2; continue; }
                        i++;
                        closed = true;
                        break;
                    }
                    i++;
                }
                if (!closed) { error = Problem(sql, start, "Unterminated string literal."); return tokens; }
                tokens.Add(new Token(TokenKind.String, start, i - start, sql[start..i]));
            }
            else if (c == '"')
            {
                i++;
                var name = new System.Text.StringBuilder();
                var closed = false;
                while (i < sql.Length)
                {
                    if (sql[i] == '"')
                    {
                        if (Peek(sql, i + 1) == '"') { name.Append('"'); i += 2; continue; }
                        i++;
                        closed = true;
                        break;
                    }
                    name.Append(sql[i++]);
                }
                if (!closed) { error = Problem(sql, start, "Unterminated quoted identifier."); return tokens; }
                tokens.Add(new Token(TokenKind.QuotedIdentifier, start, i - start, name.ToString()));
            }
            else if (c == '$' && !IsWordChar(Peek(sql, i - 1)) && DollarTag(sql, i) is { } tag)
            {
                var end = sql.IndexOf(tag, i + tag.Length, StringComparison.Ordinal);
                if (end < 0) { error = Problem(sql, start, $"Unterminated dollar-quoted string ({tag})."); return tokens; }
                i = end + tag.Length;
                tokens.Add(new Token(TokenKind.String, start, i - start, sql[start..i]));
            }
            else if (char.IsLetter(c) || c == '_')
            {
                while (i < sql.Length && IsWordChar(sql[i])) i++;
                tokens.Add(new Token(TokenKind.Word, start, i - start, sql[start..i]));
            }
            else if (c == ';')
            {
                i++;
                tokens.Add(new Token(TokenKind.Semicolon, start, 1, ";"));
            }
            else
            {
                i++;
                tokens.Add(new Token(TokenKind.Symbol, start, 1, c.ToString()));
            }
        }
        return tokens;
    }

    /// <summary>$tag$ or $$ at <paramref name="i"/> (a $1 parameter is not one).</summary>
    private static string? DollarTag(string sql, int i)
    {
        var j = i + 1;
        if (j < sql.Length && sql[j] == '$') return "$$";
        if (j >= sql.Length || !(char.IsLetter(sql[j]) || sql[j] == '_')) return null;
        while (j < sql.Length && (char.IsLetterOrDigit(sql[j]) || sql[j] == '_')) j++;
        return j < sql.Length && sql[j] == '$' ? sql[i..(j + 1)] : null;
    }

    private static char Peek(string s, int i) => i >= 0 && i < s.Length ? s[i] : '\0';

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c is '_' or '$';

    public static SqlProblem Problem(string sql, int offset, string message)
    {
        var (line, column) = Position(sql, offset);
        return new SqlProblem(line, column, message);
    }

    /// <summary>1-based line and column of a 0-based character offset.</summary>
    public static (int Line, int Column) Position(string sql, int offset)
    {
        offset = Math.Clamp(offset, 0, sql.Length);
        var line = 1;
        var lineStart = 0;
        for (var i = 0; i < offset; i++)
        {
            if (sql[i] == '\n') { line++; lineStart = i + 1; }
        }
        return (line, offset - lineStart + 1);
    }

    /// <summary>An identifier as PostgreSQL resolves it: unquoted folds to lower case.</summary>
    public static string Identifier(Token token) =>
        token.Kind == TokenKind.QuotedIdentifier ? token.Text : token.Text.ToLowerInvariant();

    /// <summary>A safely quoted identifier for SQL the service writes itself.</summary>
    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";

    /// <summary>A string literal for the few utility statements that cannot take parameters (ALTER ROLE ... PASSWORD).</summary>
    public static string Literal(string value) => "'" + value.Replace("'", "''") + "'";
}
