using TcStudio.Api.Environments;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Environments;

/// <summary>An environment's status and migrate endpoints as the tests call them, read as the API's response records.</summary>
public static class EnvironmentCalls
{
    public static async Task<EnvironmentStatusResponse> StatusAsync(HttpClient client, string slug, string env = "dev") =>
        await HttpAssert.ReadAsync<EnvironmentStatusResponse>(await client.GetAsync($"/api/workspaces/{slug}/environments/{env}/status"));

    /// <summary>Migrates the environment's database; asserts it succeeded.</summary>
    public static async Task<MigrateEnvironmentResponse> MigrateAsync(HttpClient client, string slug, string env = "dev") =>
        await HttpAssert.ReadAsync<MigrateEnvironmentResponse>(await client.PostAsync($"/api/workspaces/{slug}/environments/{env}/migrate", null));
}
