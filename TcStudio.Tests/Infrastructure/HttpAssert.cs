using System.Net;
using System.Text.Json;

namespace TcStudio.Tests.Infrastructure;

/// <summary>Assertions on what an API consumer sees.</summary>
public static class HttpAssert
{
    /// <summary>The response is an RFC 9457 problem with this status; returns its JSON.</summary>
    public static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(body).RootElement;
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.True(problem.TryGetProperty("title", out _), body);
        Assert.DoesNotContain("   at ", body); // never a stack trace
        Assert.Null(MissingCode(body));
        return problem;
    }

    /// <summary>
    /// Null when a problem body carries a stable code from the catalogue (ErrorCodes, listed in docs/api.md);
    /// otherwise what is wrong with it.
    /// </summary>
    public static string? MissingCode(string body)
    {
        JsonElement problem;
        try
        {
            problem = JsonDocument.Parse(body).RootElement;
        }
        catch (JsonException)
        {
            return $"a problem response is not JSON: {body}";
        }
        if (!problem.TryGetProperty("code", out var code) || code.ValueKind != JsonValueKind.String || code.GetString() is not { Length: > 0 } value)
        {
            return $"a problem has no code: {body}";
        }
        return TcStudio.Api.Infrastructure.ErrorCodes.All.Contains(value) ? null : $"a problem's code '{value}' is not in the catalogue: {body}";
    }

    /// <summary>A 400 validation problem naming <paramref name="field"/> among its errors.</summary>
    public static async Task<JsonElement> ValidationProblemAsync(HttpResponseMessage response, string field)
    {
        var problem = await ProblemAsync(response, HttpStatusCode.BadRequest);
        var errors = problem.GetProperty("errors");
        Assert.True(errors.TryGetProperty(field, out _), $"expected an error for '{field}': {problem}");
        return problem;
    }

    /// <summary>
    /// The API's JSON read as one of its public response records, after asserting the status. Strict: a member the record
    /// lacks fails the read, so a typed read also says the response has exactly that shape.
    /// </summary>
    public static async Task<T> ReadAsync<T>(HttpResponseMessage response, HttpStatusCode status = HttpStatusCode.OK)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        try
        {
            return JsonSerializer.Deserialize<T>(body, ResponseJson)!;
        }
        catch (JsonException e)
        {
            Assert.Fail($"the response is not a {typeof(T).Name}: {e.Message}: {body}");
            throw;
        }
    }

    /// <summary>The web defaults the API writes with, and no member left unread.</summary>
    public static readonly JsonSerializerOptions ResponseJson = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>A 204; anything else fails with the response's body (a problem says why).</summary>
    public static async Task NoContentAsync(HttpResponseMessage response)
    {
        if (response.StatusCode == HttpStatusCode.NoContent) return;
        Assert.Fail($"expected 204, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response, HttpStatusCode status = HttpStatusCode.OK)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement;
    }
}
