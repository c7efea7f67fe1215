using System.Net.Http.Json;
using System.Text.Json;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Procedures;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.Procedures;

/// <summary>
/// The procedure endpoints as the tests call them (validate, publish, execute), read as the API's response records; shared by
/// the procedure and environment test classes.
/// </summary>
public static class ProcedureCalls
{
    public static string Path(string slug, string name) => $"/api/workspaces/{slug}/procedures/{name}";

    /// <summary>POST …/validate with <paramref name="query"/> (<c>env=dev</c>, <c>dialect=postgres</c>).</summary>
    public static async Task<ValidationResponse> ValidateAsync(HttpClient client, string slug, string name, string query = "env=dev") =>
        await HttpAssert.ReadAsync<ValidationResponse>(await client.PostAsync($"{Path(slug, name)}/validate?{query}", null));

    /// <summary>Publishes the draft to <paramref name="env"/>; asserts it succeeded.</summary>
    public static async Task<PublishResponse> PublishAsync(HttpClient client, string slug, string name, string env = "dev") =>
        await HttpAssert.ReadAsync<PublishResponse>(await client.PostAsync($"{Path(slug, name)}/publish?env={env}", null));

    /// <summary>The raw response of POST …/execute, for tests about refusals.</summary>
    public static Task<HttpResponseMessage> ExecuteAsync(HttpClient client, string slug, string name, object body, string env = "dev") =>
        client.PostAsJsonAsync($"{Path(slug, name)}/execute?env={env}", body);

    /// <summary>
    /// A successful execution read as <see cref="ExecutionResult"/>: its cells and output parameters stay
    /// <see cref="JsonElement"/>s, so a test still sees the JSON type each value was given.
    /// </summary>
    public static async Task<ExecutionResult> ExecutedAsync(HttpClient client, string slug, string name, object body, string env = "dev") =>
        await HttpAssert.ReadAsync<ExecutionResult>(await ExecuteAsync(client, slug, name, body, env));

    /// <summary>GET …/procedures?<paramref name="query"/>: one page of drafts.</summary>
    public static async Task<PagedList<ProcedureSummary>> ListAsync(HttpClient client, string slug, string query = "") =>
        await HttpAssert.ReadAsync<PagedList<ProcedureSummary>>(await client.GetAsync($"/api/workspaces/{slug}/procedures?{query}"));

    public static async Task<ProcedureDetails> DetailsAsync(HttpClient client, string slug, string name) =>
        await HttpAssert.ReadAsync<ProcedureDetails>(await client.GetAsync(Path(slug, name)));

    /// <summary>The cell at <paramref name="row"/>, <paramref name="column"/> as the JSON the API wrote.</summary>
    public static JsonElement Cell(this ExecutionResultSet set, int row, int column) => (JsonElement)set.Rows[row][column]!;

    /// <summary>An output parameter as the JSON the API wrote.</summary>
    public static JsonElement Output(this ExecutionResult result, string name) => (JsonElement)result.OutputParameters[name]!;

    public static IEnumerable<string> ColumnNames(this ExecutionResultSet set) => set.Columns.Select(c => c.Name);
}
