using TcStudio.WorkspaceDatabases.SqlServer;

namespace TcStudio.Tests.Procedures;

/// <summary>
/// Drafts nested hundreds of thousands of levels deep, against the T-SQL validator (no database): pure logic, but
/// seconds of parsing each, so they run with the integration tests rather than in the unit tier.
/// </summary>
public sealed class SqlServerDeepDraftTests
{
    public static TheoryData<string, int> DeepDrafts => new()
    {
        { "paren", 250_000 },
        { "begin", 40_000 },
        { "case", 20_000 },
        { "subquery", 50_000 },
        { "if", 60_000 },
    };

    /// <summary>ScriptDom recurses per level and a stack overflow would end the process: deep drafts are refused first.</summary>
    [Theory]
    [MemberData(nameof(DeepDrafts))]
    public void Drafts_nested_too_deep_for_the_parser_are_refused_without_harm(string kind, int depth)
    {
        var body = kind switch
        {
            "paren" => "SELECT " + new string('(', depth) + "1" + new string(')', depth) + ";",
            "begin" => string.Concat(Enumerable.Repeat("BEGIN ", depth)) + "SELECT 1; " + string.Concat(Enumerable.Repeat("END ", depth)),
            "case" => "SELECT " + string.Concat(Enumerable.Repeat("CASE WHEN 1 = 1 THEN ", depth)) + "1"
            + string.Concat(Enumerable.Repeat(" END", depth)) + ";",
            "subquery" => "SELECT " + string.Concat(Enumerable.Repeat("(SELECT ", depth)) + "1" + new string(')', depth) + ";",
            _ => string.Concat(Enumerable.Repeat("IF 1 = 1 ", depth)) + "SELECT 1;",
        };
        var check = TSqlDraftValidator.Check("dbo.Deep", "CREATE PROCEDURE dbo.Deep AS\n" + body);
        var error = Assert.Single(check.Validation.Errors);
        Assert.Contains(kind == "if" ? "IF and WHILE" : "nests deeper", error.Message);
    }
}
