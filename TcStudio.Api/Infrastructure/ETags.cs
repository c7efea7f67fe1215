using Microsoft.Extensions.Primitives;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Strong ETags from PostgreSQL's row version (xmin), and the one place where a write evaluates If-Match and
/// If-None-Match (RFC 9110 §13.1.1, §13.1.2, §13.2.2), so every route that accepts them behaves the same:
/// <list type="bullet">
/// <item>a malformed value is a 400 naming the header (never "no precondition": a typo must not turn a guarded write
/// into an unguarded one);</item>
/// <item><c>If-Match: *</c> holds when the resource exists; a list holds when one of its tags is the current ETag by
/// strong comparison, so a weak tag (<c>W/"…"</c>) never matches; otherwise 412;</item>
/// <item><c>If-None-Match: *</c> fails on an existing resource; a list fails when a tag matches by weak comparison;
/// a failed If-None-Match is 412 on writes (304 on reads, see <see cref="ConditionalRequestFilter"/>).</item>
/// </list>
/// A route whose resource does not exist answers 404 before any precondition (RFC 9110 §13.2.1).
/// </summary>
public static class ETags
{
    public const string IfMatch = "If-Match";
    public const string IfNoneMatch = "If-None-Match";

    public static string From(uint version) => $"\"{version}\"";

    /// <summary>
    /// Evaluates the request's If-Match and If-None-Match against the current version of an existing resource.
    /// Returns the problem to answer (400 malformed, 412 failed), or null when the write may go ahead.
    /// </summary>
    public static ProblemHttpResult? CheckPreconditions(HttpRequest request, uint version, string what) =>
        Evaluate(request.Headers.IfMatch, request.Headers.IfNoneMatch, From(version), what);

    internal static ProblemHttpResult? Evaluate(StringValues ifMatch, StringValues ifNoneMatch, string? currentETag, string what)
    {
        if (!EntityTagHeader.TryParse(ifMatch, out var match)) return Malformed(IfMatch);
        if (!EntityTagHeader.TryParse(ifNoneMatch, out var noneMatch)) return Malformed(IfNoneMatch);

        if (match is not null && !match.MatchesStrongly(currentETag))
        {
            return PreconditionFailed(what, $"{IfMatch} does not match its current ETag");
        }
        if (noneMatch is not null && noneMatch.MatchesWeakly(currentETag))
        {
            return PreconditionFailed(what, $"{IfNoneMatch} matches its current ETag",
                "It exists in the version you named; nothing was changed.");
        }
        return null;
    }

    public static ProblemHttpResult PreconditionFailed(string what) => PreconditionFailed(what, $"{IfMatch} does not match its current ETag");

    private static ProblemHttpResult PreconditionFailed(string what, string why, string? then = null) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status412PreconditionFailed,
            title: "The resource was changed by someone else.",
            detail: $"The {what} is not in the state your request requires ({why}). "
                + (then ?? "Read it again and reapply your change."));

    /// <summary>400 naming the header, with the form it must take.</summary>
    public static ProblemHttpResult Malformed(string header) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status400BadRequest,
            title: "The request is not valid.",
            detail: $"The {header} header is malformed: it must be * or a comma-separated list of entity tags in double quotes, "
                + "such as \"123\" or W/\"123\" (RFC 9110). Nothing was changed.",
            extensions: new Dictionary<string, object?>
            {
                ["errors"] = new Dictionary<string, string[]> { [header] = [$"'{header}' must be * or a list of quoted entity tags."] },
            });
}

/// <summary>One entity tag as sent: its opaque part with the quotes, and whether it was weak (W/).</summary>
public readonly record struct EntityTag(string Opaque, bool IsWeak);

/// <summary>A parsed If-Match or If-None-Match: <c>*</c>, or a non-empty list of entity tags.</summary>
public sealed class EntityTagCondition
{
    public bool IsAny { get; private init; }
    public IReadOnlyList<EntityTag> Tags { get; private init; } = [];

    /// <summary>If-Match's comparison: * matches any existing resource; a tag only when both are strong and equal.</summary>
    public bool MatchesStrongly(string? currentETag) =>
        currentETag is not null && (IsAny || Tags.Any(tag => !tag.IsWeak && tag.Opaque == currentETag));

    /// <summary>If-None-Match's comparison: weakness is ignored on both sides.</summary>
    public bool MatchesWeakly(string? currentETag)
    {
        if (currentETag is null) return false;
        if (IsAny) return true;
        var current = currentETag.StartsWith("W/", StringComparison.Ordinal) ? currentETag[2..] : currentETag;
        return Tags.Any(tag => tag.Opaque == current);
    }

    internal static EntityTagCondition Any() => new() { IsAny = true };
    internal static EntityTagCondition Of(List<EntityTag> tags) => new() { Tags = tags };
}

/// <summary>
/// Parses If-Match / If-None-Match exactly as RFC 9110 writes them: <c>"*" / #entity-tag</c>, where
/// <c>entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE</c> and <c>etagc = %x21 / %x23-7E / obs-text</c>. Several field
/// lines form one list. Anything else (an unquoted tag, <c>W/*</c>, <c>*</c> inside a list, a lowercase <c>w/</c>,
/// an empty value, text after a tag) is malformed.
/// </summary>
public static class EntityTagHeader
{
    public const int MaxTags = 64;

    /// <returns>false when malformed; true with <paramref name="condition"/> null when the header is absent.</returns>
    public static bool TryParse(StringValues values, out EntityTagCondition? condition)
    {
        condition = null;
        if (values.Count == 0) return true;

        var tags = new List<EntityTag>();
        var sawAny = false;
        foreach (var line in values)
        {
            if (line is null) return false;
            if (line.Trim(' ', '\t') == "*")
            {
                sawAny = true;
                continue;
            }
            if (!TryParseList(line, tags)) return false;
        }
        if (sawAny)
        {
            // "*" is the whole field value or nothing.
            if (tags.Count > 0 || values.Count > 1) return false;
            condition = EntityTagCondition.Any();
            return true;
        }
        if (tags.Count == 0 || tags.Count > MaxTags) return false;
        condition = EntityTagCondition.Of(tags);
        return true;
    }

    private static bool TryParseList(string value, List<EntityTag> tags)
    {
        var i = 0;
        while (true)
        {
            // Empty list elements ("a, , b") are allowed; OWS around elements too.
            while (i < value.Length && (value[i] is ' ' or '\t' or ',')) i++;
            if (i == value.Length) return true;

            var weak = false;
            if (value[i] == 'W' && i + 1 < value.Length && value[i + 1] == '/')
            {
                weak = true;
                i += 2;
            }
            if (i >= value.Length || value[i] != '"') return false;
            var start = i++;
            while (i < value.Length && value[i] != '"')
            {
                if (!IsETagChar(value[i])) return false;
                i++;
            }
            if (i >= value.Length) return false; // no closing quote
            i++;
            tags.Add(new EntityTag(value[start..i], weak));

            while (i < value.Length && (value[i] is ' ' or '\t')) i++;
            if (i < value.Length && value[i] != ',') return false;
        }
    }

    /// <summary>etagc: visible ASCII except DQUOTE, plus obs-text (0x80-0xFF, as Latin-1 decoding yields it).</summary>
    private static bool IsETagChar(char c) => c == '\x21' || (c >= '\x23' && c <= '\x7e') || (c >= '\x80' && c <= '\xff');
}
