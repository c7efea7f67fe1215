using System.Net;
using System.Net.Http.Json;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Users;

/// <summary>
/// The system keeps at least one active Admin: demoting, deactivating or deleting the last one is a 409, also when
/// two Admins try to remove each other at the same moment. A database of its own, since these tests add and remove
/// Admins.
/// </summary>
public sealed class LastAdminTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private Task<long> ActiveAdminsAsync() => api.ScalarAsync<long>(
        "SELECT count(*) FROM users u JOIN roles r ON r.id = u.role_id WHERE r.name = 'Admin' AND u.is_active AND u.deleted_at IS NULL");

    [Fact]
    public async Task The_last_active_admin_cannot_be_demoted_deactivated_or_deleted_and_two_admins_cannot_remove_each_other()
    {
        using var admin = await api.AdminAsync();
        var adminId = await api.UserIdAsync("admin");
        Assert.Equal(1L, await ActiveAdminsAsync());
        var activities = await api.ScalarAsync<long>("SELECT count(*) FROM activities");

        var demote = await HttpAssert.ProblemAsync(await admin.PatchAsJsonAsync($"/api/users/{adminId}", new { role = "User" }),
            HttpStatusCode.Conflict);
        Assert.Equal("role", demote.GetProperty("field").GetString());
        var deactivate = await HttpAssert.ProblemAsync(await admin.PatchAsJsonAsync($"/api/users/{adminId}", new { isActive = false }),
            HttpStatusCode.Conflict);
        Assert.Equal("isActive", deactivate.GetProperty("field").GetString());
        await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/users/{adminId}"), HttpStatusCode.Conflict);
        Assert.Equal(1L, await ActiveAdminsAsync());
        Assert.Equal(activities, await api.ScalarAsync<long>("SELECT count(*) FROM activities"));
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/api/users")).StatusCode);

        // With a second Admin, each may remove the other; racing, exactly one wins.
        var secondId = (await HttpAssert.ReadAsync<UserResponse>(await admin.PostAsJsonAsync("/api/users",
            new { username = "second-admin", password = "second-admin-1", role = "Admin" }), HttpStatusCode.Created)).Id;
        using var second = await api.CreateClientAsync("second-admin", "second-admin-1");
        Assert.Equal(2L, await ActiveAdminsAsync());

        var responses = await Task.WhenAll(
            admin.PatchAsJsonAsync($"/api/users/{secondId}", new { isActive = false }),
            second.PatchAsJsonAsync($"/api/users/{adminId}", new { isActive = false }));

        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.OK);
        // The loser either waited for the winner's lock and found itself last (409), or its own token had just been
        // revoked by the winner (401).
        Assert.All(responses.Where(r => r.StatusCode != HttpStatusCode.OK),
            r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.Conflict, HttpStatusCode.Unauthorized }));
        Assert.Equal(1L, await ActiveAdminsAsync());

        // Put things back: whoever is left reactivates the other, who is then demoted; the seeded admin stays last.
        var adminWon = responses[0].StatusCode == HttpStatusCode.OK;
        using var survivor = adminWon ? await api.AdminAsync() : await api.CreateClientAsync("second-admin", "second-admin-1");
        var loserId = adminWon ? secondId : adminId;
        await HttpAssert.ReadAsync<UserResponse>(await survivor.PatchAsJsonAsync($"/api/users/{loserId}", new { isActive = true }));
        Assert.Equal(2L, await ActiveAdminsAsync());
        Assert.Equal(HttpStatusCode.NoContent, (await survivor.DeleteAsync($"/api/users/{secondId}")).StatusCode);
        Assert.Equal(1L, await ActiveAdminsAsync());
    }

    [Fact]
    public async Task An_inactive_admin_does_not_count_and_may_be_changed_freely()
    {
        using var admin = await api.AdminAsync();
        var id = (await HttpAssert.ReadAsync<UserResponse>(await admin.PostAsJsonAsync("/api/users",
            new { username = "dormant-admin", password = "dormant-admin-1", role = "Admin" }), HttpStatusCode.Created)).Id;
        await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}", new { isActive = false }));

        var demoted = await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}", new { role = "User" }));
        Assert.Equal("User", demoted.Role);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/users/{id}")).StatusCode);
        Assert.Equal(1L, await ActiveAdminsAsync());
    }
}
