using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Extensions;

namespace TcStudio.Api.Infrastructure;

/// <summary>?page=&amp;pageSize= for every offset-paged list (pageSize 1–200, default 50).</summary>
public sealed record PageRequest(int? Page, int? PageSize)
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 200;

    public int PageNumber => Page ?? 1;
    public int Size => PageSize ?? DefaultPageSize;
    public int Skip => (PageNumber - 1) * Size;

    public FieldErrors Validate(FieldErrors? errors = null)
    {
        errors ??= new FieldErrors();
        errors.Range("page", Page, 1, 100_000);
        errors.Range("pageSize", PageSize, 1, MaxPageSize);
        return errors;
    }

    /// <summary>This page of a list of <paramref name="totalCount"/> items, with the link to the next page when there is one.</summary>
    public PagedList<T> ToPage<T>(IReadOnlyList<T> items, int totalCount, HttpRequest request) =>
        new(items, PageNumber, Size, totalCount)
        {
            Next = Skip + items.Count < totalCount && items.Count > 0
                ? ListLinks.WithQuery(request, "page", (PageNumber + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)) : null,
        };
}

/// <summary>
/// An offset-paged list: <c>{items, page, pageSize, totalCount, next}</c>; <c>next</c> is the absolute URL of the
/// next page, absent on the last one.
/// </summary>
public sealed record PagedList<T>(IReadOnlyList<T> Items, int Page, int PageSize, int TotalCount)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Next { get; init; }
}

/// <summary>A cursor-paged list: <c>{items, nextCursor, next}</c>; both are absent on the last page.</summary>
public sealed record CursorList<T>(IReadOnlyList<T> Items)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? NextCursor { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Next { get; init; }

    /// <summary>A page whose next page starts after <paramref name="nextCursor"/> (null: this is the last page).</summary>
    public static CursorList<T> Of(IReadOnlyList<T> items, string? nextCursor, HttpRequest request) => new(items)
    {
        NextCursor = nextCursor,
        Next = nextCursor is null ? null : ListLinks.WithQuery(request, "cursor", nextCursor),
    };
}

public static class ListLinks
{
    /// <summary>
    /// The absolute URL of this request with one query parameter set (matched ignoring case, as binding does) and
    /// every other one kept, so a next-page link keeps the caller's filters.
    /// </summary>
    public static string WithQuery(HttpRequest request, string name, string value)
    {
        var query = request.Query.Where(p => !string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase))
            .SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string?>(p.Key, v)))
            .Append(new KeyValuePair<string, string?>(name, value));
        return UriHelper.BuildAbsolute(request.Scheme, request.Host, request.PathBase, request.Path, QueryString.Create(query));
    }

    /// <summary>A whole (small, unpaged) collection in the offset-list shape: one page holding everything.</summary>
    public static PagedList<T> Whole<T>(IReadOnlyList<T> items) => new(items, 1, Math.Max(items.Count, 1), items.Count);
}
