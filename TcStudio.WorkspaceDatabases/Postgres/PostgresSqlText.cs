namespace TcStudio.WorkspaceDatabases.Postgres;

/// <summary>
/// PostgreSQL's lexical rules (src/backend/parser/scan.l, as of PostgreSQL 15), as far as they decide where tokens,
/// strings, comments and statements begin and end: enough to require exactly one CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE per draft and to read its head without a database. This is the friendly first check only:
/// the server itself refuses a second statement (the draft is sent as one extended-protocol statement), so a
/// difference between this lexer and the server's can make a draft fail, never run twice.
/// <list type="bullet">
/// <item>whitespace is only space, tab, newline, carriage return and form feed (a no-break space is not);</item>
/// <item>identifiers start with an ASCII letter, '_' or any character from U+0080 up, and continue with those,
/// ASCII digits and '$' — so <c>§$x$</c> is one identifier, not the start of a dollar-quoted string;</item>
/// <item>dollar quotes: <c>$tag$</c> with the same characters (no '$' or digit first) only where a token starts;</item>
/// <item>'…' strings (standard_conforming_strings on: a backslash is an ordinary character, which the service
/// enforces for every draft it sends), E'…' strings with backslash escapes, and a string continued on a later line
/// (<c>'a'</c> newline <c>'b'</c>) in the mode it started in;</item>
/// <item>"…" identifiers; line comments end at a newline or a carriage return; block comments nest.</item>
/// </list>
/// </summary>
internal static class PostgresSqlText
{
    public enum TokenKind { Word, QuotedIdentifier, String, Number, Symbol, Semicolon }

    public readonly record struct Token(TokenKind Kind, int Start, int Length, string Text);

    /// <summary>
    /// The statements of <paramref name="sql"/>: each a token list (comments dropped), empty ones skipped. A ';'
    /// ends a statement as psql decides it: not inside parentheses, nor inside BEGIN … END of a CREATE [OR REPLACE]
    /// FUNCTION|PROCEDURE (a SQL-standard body, BEGIN ATOMIC … END, holds statements of its own).
    /// </summary>
    public static List<List<Token>> Statements(string sql, out SqlProblem? error)
    {
        var statements = new List<List<Token>>();
        var current = new List<Token>();
        var parenDepth = 0;
        var beginDepth = 0;
        foreach (var token in Tokenize(sql, out error))
        {
            if (token.Kind == TokenKind.Semicolon && parenDepth == 0 && beginDepth == 0)
            {
                if (current.Count > 0) statements.Add(current);
                current = [];
                continue;
            }
            current.Add(token);
            if (token.Kind == TokenKind.Symbol && token.Text == "(")
            {
                parenDepth++;
            }
            else if (token.Kind == TokenKind.Symbol && token.Text == ")" && parenDepth > 0)
            {
                parenDepth--;
            }
            else if (token.Kind == TokenKind.Word && parenDepth == 0 && CreatesRoutine(current))
            {
                if (token.Text.Equals("BEGIN", StringComparison.OrdinalIgnoreCase)) beginDepth++;
                else if (token.Text.Equals("CASE", StringComparison.OrdinalIgnoreCase) && beginDepth > 0) beginDepth++; // CASE … END
                else if (token.Text.Equals("END", StringComparison.OrdinalIgnoreCase) && beginDepth > 0) beginDepth--;
            }
        }
        if (current.Count > 0) statements.Add(current);
        return statements;
    }

    /// <summary>Whether the statement so far starts CREATE [OR REPLACE] FUNCTION|PROCEDURE (its first words, as psql reads them).</summary>
    private static bool CreatesRoutine(List<Token> statement)
    {
        Span<string?> words = [null, null, null, null];
        var n = 0;
        foreach (var token in statement)
        {
            if (token.Kind != TokenKind.Word) continue;
            words[n++] = token.Text;
            if (n == words.Length) break;
        }
        static bool Is(string? word, string expected) => string.Equals(word, expected, StringComparison.OrdinalIgnoreCase);
        static bool Routine(string? word) => Is(word, "FUNCTION") || Is(word, "PROCEDURE");
        return Is(words[0], "CREATE") && (Routine(words[1]) || (Is(words[1], "OR") && Is(words[2], "REPLACE") && Routine(words[3])));
    }

    /// <summary>PostgreSQL's whitespace ([ \t\n\r\f]); nothing else, Unicode spaces included, separates tokens.</summary>
    public static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\r' or '\f';

    private static bool IsNewline(char c) => c is '\n' or '\r';

    /// <summary>ident_start: [A-Za-z\200-\377_] (every byte of a multi-byte UTF-8 character is \200 or above).</summary>
    public static bool IsIdentifierStart(char c) => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or '_' || c >= '\u0080';

    /// <summary>ident_cont: ident_start, ASCII digits and '$'.</summary>
    public static bool IsIdentifierPart(char c) => IsIdentifierStart(c) || c is >= '0' and <= '9' or '$';

    private static bool IsDigit(char c) => c is >= '0' and <= '9';

    public static List<Token> Tokenize(string sql, out SqlProblem? error)
    {
        var tokens = new List<Token>();
        error = null;
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            var start = i;
            if (IsSpace(c))
            {
                i++;
            }
            else if (c == '\0')
            {
                error = Problem(sql, start, "The draft contains a NUL character.");
                return tokens;
            }
            else if (c == '-' && Peek(sql, i + 1) == '-')
            {
                i = LineCommentEnd(sql, i);
            }
            else if (c == '/' && Peek(sql, i + 1) == '*')
            {
                i = BlockCommentEnd(sql, i);
                if (i < 0) { error = Problem(sql, start, "Unterminated /* comment."); return tokens; }
            }
            else if (c == '\'' || (c is 'E' or 'e' && Peek(sql, i + 1) == '\''))
            {
                // Only reached where a token starts: an identifier such as abcE swallows its E (then 'x' is a plain string).
                i = StringEnd(sql, c == '\'' ? i : i + 1, backslashEscapes: c != '\'');
                if (i < 0) { error = Problem(sql, start, "Unterminated string literal."); return tokens; }
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
                if (name.Length == 0) { error = Problem(sql, start, "Zero-length delimited identifier."); return tokens; }
                tokens.Add(new Token(TokenKind.QuotedIdentifier, start, i - start, name.ToString()));
            }
            else if (c == '$' && DollarTag(sql, i) is { } tag)
            {
                var end = sql.IndexOf(tag, i + tag.Length, StringComparison.Ordinal);
                if (end < 0) { error = Problem(sql, start, $"Unterminated dollar-quoted string ({tag})."); return tokens; }
                i = end + tag.Length;
                tokens.Add(new Token(TokenKind.String, start, i - start, sql[start..i]));
            }
            else if (IsIdentifierStart(c))
            {
                while (i < sql.Length && IsIdentifierPart(sql[i])) i++;
                tokens.Add(new Token(TokenKind.Word, start, i - start, sql[start..i]));
            }
            else if (IsDigit(c))
            {
                while (i < sql.Length && IsDigit(sql[i])) i++;
                // PostgreSQL 15 reads "123abc" as one (invalid) token: trailing junk after a numeric literal.
                if (i < sql.Length && IsIdentifierStart(sql[i])) i++;
                tokens.Add(new Token(TokenKind.Number, start, i - start, sql[start..i]));
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

    /// <summary>Past a "--" comment: it runs to the next newline or carriage return (not included).</summary>
    private static int LineCommentEnd(string sql, int i)
    {
        while (i < sql.Length && !IsNewline(sql[i])) i++;
        return i;
    }

    /// <summary>Past a (nesting) block comment starting at <paramref name="i"/>; -1 when it never closes.</summary>
    private static int BlockCommentEnd(string sql, int i)
    {
        var depth = 0;
        while (i < sql.Length)
        {
            if (sql[i] == '/' && Peek(sql, i + 1) == '*') { depth++; i += 2; }
            else if (sql[i] == '*' && Peek(sql, i + 1) == '/') { depth--; i += 2; if (depth == 0) return i; }
            else
            {
                i++;
            }
        }
        return -1;
    }

    /// <summary>
    /// Past a string literal whose opening quote is at <paramref name="i"/>; -1 when it never closes. '' is a quote
    /// in both modes; with <paramref name="backslashEscapes"/> (E'…') a backslash escapes the next character. A
    /// quote that follows the closing one after whitespace holding a newline continues the same string, in the same
    /// mode (scan.l's quotecontinue).
    /// </summary>
    private static int StringEnd(string sql, int i, bool backslashEscapes)
    {
        i++;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (backslashEscapes && c == '\\') { i += 2; continue; }
            if (c != '\'') { i++; continue; }
            if (Peek(sql, i + 1) == '\'') { i += 2; continue; }
            i++;
            if (ContinuationQuote(sql, i) is { } next) { i = next + 1; continue; }
            return i;
        }
        return -1;
    }

    /// <summary>
    /// Where a string continues after its closing quote: {horiz_whitespace}* {newline} {special_whitespace}* {quote},
    /// with horiz_whitespace = [ \t\f] or a -- comment, and special_whitespace = [ \t\n\r\f]+ or a -- comment ending in a
    /// newline. Returns the position of the continuing quote, or null.
    /// </summary>
    private static int? ContinuationQuote(string sql, int i)
    {
        while (i < sql.Length)
        {
            if (sql[i] is ' ' or '\t' or '\f') i++;
            else if (sql[i] == '-' && Peek(sql, i + 1) == '-') i = LineCommentEnd(sql, i);
            else break;
        }
        if (i >= sql.Length || !IsNewline(sql[i])) return null;
        i++;
        while (i < sql.Length)
        {
            if (IsSpace(sql[i])) { i++; continue; }
            if (sql[i] == '-' && Peek(sql, i + 1) == '-')
            {
                var end = LineCommentEnd(sql, i);
                if (end >= sql.Length) return null; // {comment}{newline}: a comment running to the end is not whitespace here
                i = end;
                continue;
            }
            break;
        }
        return i < sql.Length && sql[i] == '\'' ? i : null;
    }

    /// <summary>$tag$ or $$ at <paramref name="i"/> (a $1 parameter or a lone '$' is not one).</summary>
    private static string? DollarTag(string sql, int i)
    {
        var j = i + 1;
        if (j < sql.Length && sql[j] == '$') return "$$";
        if (j >= sql.Length || !IsIdentifierStart(sql[j])) return null;
        while (j < sql.Length && (IsIdentifierStart(sql[j]) || IsDigit(sql[j]))) j++;
        return j < sql.Length && sql[j] == '$' ? sql[i..(j + 1)] : null;
    }

    private static char Peek(string s, int i) => i >= 0 && i < s.Length ? s[i] : '\0';

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

    /// <summary>An identifier as PostgreSQL resolves it: unquoted, only ASCII letters fold to lower case (in UTF-8).</summary>
    public static string Identifier(Token token) =>
        token.Kind == TokenKind.QuotedIdentifier ? token.Text : string.Create(token.Text.Length, token.Text, static (span, text) =>
        {
            for (var i = 0; i < text.Length; i++) span[i] = text[i] is >= 'A' and <= 'Z' ? (char)(text[i] + 32) : text[i];
        });

    /// <summary>A safely quoted identifier for SQL the service writes itself.</summary>
    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";

    /// <summary>A string literal for the few utility statements that cannot take parameters (ALTER ROLE ... PASSWORD).</summary>
    public static string Literal(string value) => "'" + value.Replace("'", "''") + "'";
}
