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
}

/// <summary>One page of a list: the items, where it is, and how many there are in all.</summary>
public sealed record PagedList<T>(IReadOnlyList<T> Items, int Page, int PageSize, int TotalCount);
