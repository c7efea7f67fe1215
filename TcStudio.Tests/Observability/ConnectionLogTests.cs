using System.Net.Http.Json;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.SystemDatabase.Seeding;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>
/// A connection that fails is logged with host, port, database and user, whichever pool it belongs to (here a
/// workspace server's admin connection with a wrong password), and never with the password.
/// </summary>
public sealed class ConnectionLogTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task A_failed_connection_is_logged_with_where_and_as_whom_and_never_the_password()
    {
        var port = database.Server.Admin.Port;
        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = database.ConnectionString,
            ["Auth:SigningKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)),
            ["Seed:AdminPassword"] = ApiFixture.AdminPassword,
            ["Seed:UserPassword"] = ApiFixture.UserPassword,
            ["Seed:DevDatabaseName"] = database.DatabaseName + "_twsbp_dev",
            ["Workspaces:ConnectTimeout"] = "00:00:02",
            ["Workspaces:RetryAttempts"] = "1",
            ["WorkspaceServers:broken:Provider"] = "postgres",
            ["WorkspaceServers:broken:ConnectionString"] =
                $"Host=127.0.0.1;Port={port};Database=postgres;Username=tcstudio_nobody;Password=never-logged-secret",
        });
        await using (var scope = api.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<SystemSeeder>().SeedAsync();
        }
        using var admin = api.CreateClient();
        await ApiFixture.SignInAsync(admin, "admin", ApiFixture.AdminPassword);
        var (slug, _) = await ApiFixture.NewWorkspaceAsync(admin, "broken", "Broken");

        var response = await admin.PostAsJsonAsync($"/api/workspaces/{slug}/environments",
            new { name = "dev", server = "broken", databaseName = "broken_dev", create = true });

        Assert.False(response.IsSuccessStatusCode);
        var failures = api.Logs.Entries.Where(e => e.Category == "TcStudio.Database.Connections"
            && e.Message.StartsWith("Could not open a connection", StringComparison.Ordinal)).Select(e => e.Message).ToList();
        Assert.Contains(failures, m => m.StartsWith(
            $"Could not open a connection to PostgreSQL at 127.0.0.1:{port}/postgres as tcstudio_nobody: 28P01", StringComparison.Ordinal));
        Assert.DoesNotContain(api.Logs.Entries, e => e.Message.Contains("never-logged-secret", StringComparison.Ordinal));
    }
}
