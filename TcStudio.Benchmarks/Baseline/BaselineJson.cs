using System.Text.Json;
using System.Text.Json.Serialization;

namespace TcStudio.Benchmarks.Baseline;

// The baseline server's request and response types: the product's response shapes (same property names, order and
// null handling), written out by hand as a hand-written server would, and serialized with source generation.

public sealed record BaselineWorkspace(Guid Id, string Name, string Slug, string? Description, JsonElement Settings,
    int MemberCount, string? Role, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

public sealed record BaselineProcedureSummary(Guid Id, string Name, string Status, DateTimeOffset? PublishedAt, DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt)
{
    [JsonPropertyName("etag")]
    public string? ETag { get; init; }
}

public sealed record BaselineProcedurePage(IReadOnlyList<BaselineProcedureSummary> Items, int Page, int PageSize, int TotalCount)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Next { get; init; }
}

public sealed record BaselineActivity(Guid Id, string Action, string EntityType, Guid? EntityId, string? Username,
    JsonElement? Details, DateTimeOffset CreatedAt);

public sealed record BaselineActivityPage(IReadOnlyList<BaselineActivity> Items)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? NextCursor { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Next { get; init; }
}

public sealed record BaselineDraft(Guid Id, string Name, string Status, string Sql, string? SqlPublished, DateTimeOffset? PublishedAt,
    Guid CreatedBy, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string? PublishedChecksum = null);

public sealed record BaselineCreateRequest(string Name, string Sql);

public sealed record BaselineUpdateRequest(string Sql);

public sealed record BaselineActivityDetails(string Name);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(BaselineWorkspace))]
[JsonSerializable(typeof(BaselineProcedurePage))]
[JsonSerializable(typeof(BaselineActivityPage))]
[JsonSerializable(typeof(BaselineDraft))]
[JsonSerializable(typeof(BaselineCreateRequest))]
[JsonSerializable(typeof(BaselineUpdateRequest))]
[JsonSerializable(typeof(BaselineActivityDetails))]
public sealed partial class BaselineJsonContext : JsonSerializerContext
{
    /// <summary>
    /// Web defaults with ASP.NET Core's own default encoder for HTTP JSON (relaxed escaping: quotes as \", non-ASCII
    /// as is), as the product's responses are written.
    /// </summary>
    public static BaselineJsonContext Http { get; } = new(new JsonSerializerOptions(JsonSerializerDefaults.Web)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
