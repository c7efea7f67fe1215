using TcStudio.Api.Infrastructure;

namespace TcStudio.UnitTests.Api;

/// <summary>The request guards' pure parts: dot segments in a raw target, and the JSON body checks binding lacks.</summary>
public sealed class RequestGuardTests
{
    [Theory]
    [InlineData("/api/x/%2e%2e/y", true)]
    [InlineData("/api/x/%2E%2e", true)]
    [InlineData("/api/x/.%2e/y", true)]
    [InlineData("/api/x/%2e/y", true)]
    [InlineData("/api/x/../y", true)]
    [InlineData("/api/x/./y?q=1", true)]
    [InlineData("http://host/api/%2e%2e", true)]
    [InlineData("/api/x/...", false)]
    [InlineData("/api/x/.hidden", false)]
    [InlineData("/api/x/a.b", false)]
    [InlineData("/api/x?path=../..", false)]
    public void Dot_segments_are_found_in_every_spelling(string rawTarget, bool hasDotSegment) =>
        Assert.Equal(hasDotSegment, RequestGuards.HasDotSegment(rawTarget));

    [Theory]
    [InlineData("""{"name":"a","Name":"b"}""", "Name")] // the path names the repeat, as sent
    [InlineData("""{"parameters":{"x":1,"X":2}}""", "parameters.X")]
    [InlineData("""[{"a":1},{"b":1,"b":2}]""", "[1].b")]
    public void A_name_twice_in_one_object_ignoring_case_is_found_with_its_path(string json, string field)
    {
        var problem = RequestGuards.FindJsonProblem(System.Text.Encoding.UTF8.GetBytes(json));

        Assert.NotNull(problem);
        Assert.EndsWith(field, problem.Path);
    }

    [Theory]
    [InlineData("""{"name":"a","sql":"select 1","nested":{"name":"b"}}""")]
    [InlineData("""[{"a":1},{"a":2}]""")]
    [InlineData("""{"broken":""")] // malformed JSON is binding's to report, in its own words
    public void Distinct_names_per_object_pass(string json) =>
        Assert.Null(RequestGuards.FindJsonProblem(System.Text.Encoding.UTF8.GetBytes(json)));
}
