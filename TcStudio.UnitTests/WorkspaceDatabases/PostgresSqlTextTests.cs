using static TcStudio.WorkspaceDatabases.Postgres.PostgresSqlText;

namespace TcStudio.UnitTests.WorkspaceDatabases;

/// <summary>The draft lexer against PostgreSQL's own rules (scan.l), case by case; no database.</summary>
public sealed class PostgresSqlTextTests
{
    private static int StatementCount(string sql)
    {
        var statements = Statements(sql, out var error);
        Assert.True(error is null, error?.Message);
        return statements.Count;
    }

    private static List<Token> Tokens(string sql)
    {
        var tokens = Tokenize(sql, out var error);
        Assert.True(error is null, error?.Message);
        return tokens;
    }

    [Theory]
    // Identifiers take any character from U+0080 and '$' after the first: no dollar quote starts inside them.
    [InlineData("CREATE FUNCTION g(§$x$ int) RETURNS int LANGUAGE sql AS 'select 1'; COMMIT; CREATE TABLE pwned(x int); --$x$", 3)]
    [InlineData("SELECT é$x$; SELECT 2; --$x$", 2)]
    [InlineData("SELECT x$a$; SELECT 2; $a$", 0)] // "$a$" left open at the end: see the error cases
    [InlineData("SELECT a\u00A0$x$; SELECT 2; --$x$", 2)] // a no-break space is an identifier character, not whitespace
    [InlineData("SELECT 😀$x$; SELECT 2; --$x$", 2)]
    // Where a token starts, $tag$ opens a dollar quote (after a number, a string, a parenthesis...).
    [InlineData("SELECT 1$a$; SELECT 2; $a$", 1)]
    [InlineData("SELECT ($a$;$a$)", 1)]
    [InlineData("SELECT $a$ $b$ ; $b$ ; $a$; SELECT 2", 2)] // nested tags: only the outer one closes
    [InlineData("SELECT $a$ ; $A$ ; $a$", 1)] // tags are case-sensitive
    [InlineData("SELECT $1; SELECT $2", 2)] // parameters are not dollar quotes
    [InlineData("SELECT $é$ ; $é$", 1)]
    // Strings: standard_conforming_strings on (a backslash is just a character), E'' with escapes, continuation.
    [InlineData("SELECT '\\'; SELECT 2", 2)]
    [InlineData("SELECT E'\\'; SELECT 2'", 1)]
    [InlineData("SELECT e'\\\\'; SELECT 2", 2)]
    [InlineData("SELECT E'a'\n'\\' ; SELECT 2'", 1)] // a continued E'' string stays in escape mode
    [InlineData("SELECT E'a' -- note\n  -- more\n'\\' ; SELECT 2'", 1)]
    [InlineData("SELECT 'a'\n'b'; SELECT 2", 2)]
    [InlineData("SELECT abcE'x'; SELECT 2", 2)]
    // Comments: -- ends at a newline or a carriage return; block comments nest.
    [InlineData("SELECT 1 --; SELECT 2\rSELECT 3; SELECT 4", 2)]
    [InlineData("SELECT 1 /* /* */ ; */; SELECT 2", 2)]
    [InlineData("SELECT 1 /*/ ; */; SELECT 2", 2)]
    [InlineData("SELECT '--'; SELECT '/*'", 2)]
    // Statement ends as psql decides: not inside parentheses, nor inside BEGIN ... END of a routine's body.
    [InlineData("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3", 2)]
    [InlineData("CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END", 1)]
    [InlineData("SELECT (1; 2); SELECT 3", 2)]
    [InlineData("BEGIN; SELECT 1; END", 3)]
    [InlineData("\"a;b\"; \"c\"\"d;\"", 2)]
    public void Statements_are_where_postgresql_sees_them(string sql, int expected)
    {
        if (expected == 0)
        {
            Statements(sql, out var error);
            Assert.NotNull(error);
            return;
        }
        Assert.Equal(expected, StatementCount(sql));
    }

    [Theory]
    [InlineData("SELECT $a$ never closed", "Unterminated dollar-quoted string")]
    [InlineData("SELECT 'never closed", "Unterminated string")]
    [InlineData("SELECT E'escaped\\'", "Unterminated string")]
    [InlineData("SELECT 1 /* /* */", "Unterminated /* comment")]
    [InlineData("SELECT \"never closed", "Unterminated quoted identifier")]
    [InlineData("SELECT \"\"", "Zero-length")]
    [InlineData("SELECT 1\0; SELECT 2", "NUL")]
    public void Malformed_text_is_an_error_at_its_position(string sql, string message)
    {
        Statements(sql, out var error);
        Assert.NotNull(error);
        Assert.Contains(message, error.Message);
        Assert.Equal(1, error.Line);
    }

    [Fact]
    public void Tokens_follow_postgresql_character_classes()
    {
        Assert.Equal(["CREATE\u00A0FUNCTION"], Tokens("CREATE\u00A0FUNCTION").Select(t => t.Text)); // one identifier
        Assert.Equal(["abc$def$"], Tokens("abc$def$").Select(t => t.Text));
        Assert.Equal(TokenKind.Symbol, Tokens("\v").Single().Kind); // not whitespace in PostgreSQL 15
        Assert.Equal([TokenKind.Number, TokenKind.Word], Tokens("12abc").Select(t => t.Kind)); // "12a" is one (junk) token
        Assert.Equal(["12a", "bc"], Tokens("12abc").Select(t => t.Text));
        Assert.Equal([TokenKind.Word, TokenKind.Symbol, TokenKind.String], Tokens("U&'x'").Select(t => t.Kind));
        var quoted = Tokens("\"My \"\"Table\"\"\"").Single();
        Assert.Equal((TokenKind.QuotedIdentifier, "My \"Table\""), (quoted.Kind, quoted.Text));
    }

    [Fact]
    public void Unquoted_identifiers_fold_only_ascii_letters()
    {
        Assert.Equal("äpfel_abc", Identifier(Tokens("äpfel_ABC").Single()));
        Assert.Equal("Äpfel", Identifier(Tokens("Äpfel").Single()));
        Assert.Equal("MiXed", Identifier(Tokens("\"MiXed\"").Single()));
    }

    [Fact]
    public void Positions_are_one_based_lines_and_columns()
    {
        var statements = Statements("SELECT 1;\n  SELECT 2", out _);
        Assert.Equal((2, 3), Position("SELECT 1;\n  SELECT 2", statements[1][0].Start));
    }
}
