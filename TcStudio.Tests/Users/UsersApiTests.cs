using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using TcStudio.Api.Infrastructure;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Users;

/// <summary>
/// The users API over the standard fixture (sessions cached for Auth:SessionCheckInterval, as in production), so
/// the revocation tests prove that a change made through the API takes effect with the very next request.
/// No test here adds a system Admin: the last-Admin rules have a database of their own (<see cref="LastAdminTests"/>).
/// </summary>
public sealed class UsersApiTests(ApiFixture api) : IClassFixture<ApiFixture>
{
    private async Task<(HttpResponseMessage Response, UserResponse Body)> CreateAsync(HttpClient admin, object request)
    {
        var response = await admin.PostAsJsonAsync("/api/users", request);
        return (response, await HttpAssert.ReadAsync<UserResponse>(response, HttpStatusCode.Created));
    }

    private static async Task<PagedList<UserResponse>> ListAsync(HttpClient admin, string query) =>
        await HttpAssert.ReadAsync<PagedList<UserResponse>>(await admin.GetAsync($"/api/users?{query}"));

    [Fact]
    public async Task An_admin_lists_users_in_pages_without_ever_reading_password_hashes()
    {
        using var admin = await api.AdminAsync();
        for (var i = 0; i < 3; i++) await api.NewUserClientAsync($"lister-{i}");

        using var counter = new DatabaseCommandCounter(api.DatabaseName);
        // Strict: a passwordHash (or any member UserResponse lacks) fails the read.
        var all = await ListAsync(admin, "pageSize=200");
        Assert.DoesNotContain(counter.Commands, sql => sql.Contains("password_hash", StringComparison.OrdinalIgnoreCase));

        var usernames = all.Items.Select(u => u.Username).ToList();
        Assert.Contains("admin", usernames);
        Assert.Contains("lister-1", usernames);
        Assert.Equal("Admin", all.Items.Single(u => u.Username == "admin").Role);
        Assert.Equal(await api.RowsAsync("users WHERE deleted_at IS NULL"), all.TotalCount);

        var first = await ListAsync(admin, "page=1&pageSize=2");
        var second = await ListAsync(admin, "page=2&pageSize=2");
        var beyond = await ListAsync(admin, "page=999&pageSize=2");
        Assert.Equal(usernames.Take(4), first.Items.Concat(second.Items).Select(u => u.Username));
        Assert.Empty(beyond.Items);
        Assert.Equal(999, beyond.Page);
    }

    [Fact]
    public async Task Listing_users_issues_the_same_number_of_commands_whatever_the_page_size()
    {
        using var admin = await api.AdminAsync();
        for (var i = 0; i < 4; i++) await api.NewUserClientAsync($"counted-{i}");
        await admin.GetAsync("/api/users"); // warm up: session cache, prepared plans

        using var counter = new DatabaseCommandCounter(api.DatabaseName, requestsOnly: true);
        await ListAsync(admin, "pageSize=1");
        var small = counter.Commands.Count;
        counter.Reset();
        await ListAsync(admin, "pageSize=200");

        Assert.Equal(small, counter.Commands.Count);
        Assert.InRange(small, 1, 2);
    }

    [Theory]
    [InlineData("pageSize=0", "pageSize")]
    [InlineData("pageSize=201", "pageSize")]
    [InlineData("page=0", "page")]
    [InlineData("pageSize=ten", "pageSize")]
    public async Task User_page_parameters_out_of_range_are_400(string query, string field)
    {
        using var admin = await api.AdminAsync();
        await HttpAssert.ValidationProblemAsync(await admin.GetAsync($"/api/users?{query}"), field);
    }

    [Fact]
    public async Task Only_admins_list_users_users_read_only_themselves_and_anonymous_callers_nothing()
    {
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.GetAsync("/api/users"), HttpStatusCode.Unauthorized);

        using var user = await api.UserAsync();
        await HttpAssert.ProblemAsync(await user.GetAsync("/api/users"), HttpStatusCode.Forbidden);

        var userId = await api.UserIdAsync("user");
        var adminId = await api.UserIdAsync("admin");
        var self = await user.GetAsync($"/api/users/{userId}");
        var body = await HttpAssert.ReadAsync<UserResponse>(self);
        Assert.Equal("user", body.Username);
        Assert.Equal("User", body.Role);
        Assert.True(body.IsActive);
        Assert.NotNull(self.Headers.ETag);
        await HttpAssert.ProblemAsync(await user.GetAsync($"/api/users/{adminId}"), HttpStatusCode.Forbidden);

        using var admin = await api.AdminAsync();
        Assert.Equal("user", (await HttpAssert.ReadAsync<UserResponse>(await admin.GetAsync($"/api/users/{userId}"))).Username);
        await HttpAssert.ProblemAsync(await admin.GetAsync($"/api/users/{Guid.CreateVersion7()}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task An_admin_creates_a_user_who_can_then_sign_in_and_the_log_never_holds_the_password()
    {
        using var admin = await api.AdminAsync();
        var (response, created) = await CreateAsync(admin, new
        {
            username = "Created.User", password = "created-password-1", email = "created@example.com", displayName = "  Created  ", role = "User",
        });

        var id = created.Id;
        Assert.Equal($"/api/users/{id}", response.Headers.Location?.ToString());
        Assert.NotNull(response.Headers.ETag);
        Assert.Equal("Created.User", created.Username);
        Assert.Equal("Created", created.DisplayName);
        Assert.Equal("created@example.com", created.Email);
        Assert.Equal("User", created.Role); // and no password: the strict read fails on any member UserResponse lacks

        var fetched = await admin.GetAsync($"/api/users/{id}");
        Assert.Equal(response.Headers.ETag, fetched.Headers.ETag);

        using var createdClient = await api.CreateClientAsync("created.user", "created-password-1");
        var me = await HttpAssert.ReadAsync<MeResponse>(await createdClient.GetAsync("/api/me"));
        Assert.Equal(id, me.Id);

        var details = await api.ScalarAsync<string>(
            "SELECT details::text FROM activities "
            + "WHERE action = 'user.created' AND entity_type = 'user' AND entity_id = @id AND workspace_id IS NULL",
            ("id", id));
        Assert.Contains("Created.User", details);
        Assert.DoesNotContain("created-password-1", details);
        Assert.DoesNotContain("AQAAAA", details); // the hash format's prefix
    }

    [Fact]
    public async Task Usernames_and_emails_are_unique_ignoring_case_and_a_conflict_names_the_field()
    {
        using var admin = await api.AdminAsync();
        await CreateAsync(admin, new { username = "unique-one", password = "password-123", email = "Unique@Example.com", role = "User" });
        var users = await api.RowsAsync("users");

        var username = await HttpAssert.ProblemAsync(await admin.PostAsJsonAsync("/api/users",
            new { username = "UNIQUE-ONE", password = "password-123", role = "User" }), HttpStatusCode.Conflict);
        Assert.Equal("username", username.GetProperty("field").GetString());

        var email = await HttpAssert.ProblemAsync(await admin.PostAsJsonAsync("/api/users",
            new { username = "unique-two", password = "password-123", email = "unique@example.COM", role = "User" }), HttpStatusCode.Conflict);
        Assert.Equal("email", email.GetProperty("field").GetString());

        Assert.Equal(users, await api.RowsAsync("users"));
        Assert.Equal(0L, await api.RowsAsync("activities WHERE details->>'username' = 'unique-two'"));

        // Taking someone's email by a change is refused the same way, and the change is not half-applied.
        var created = await CreateAsync(admin, new { username = "unique-three", password = "password-123", role = "User" });
        var id = created.Body.Id;
        var taken = await HttpAssert.ProblemAsync(await admin.PatchAsJsonAsync($"/api/users/{id}",
            new { displayName = "Three", email = "UNIQUE@example.com" }), HttpStatusCode.Conflict);
        Assert.Equal("email", taken.GetProperty("field").GetString());
        Assert.Equal(0L, await api.RowsAsync($"users WHERE id = '{id}' AND (display_name IS NOT NULL OR email IS NOT NULL)"));
        Assert.Equal(0L, await api.RowsAsync($"activities WHERE action = 'user.updated' AND entity_id = '{id}'"));
    }

    [Fact]
    public async Task A_body_over_one_mebibyte_is_413_and_writes_nothing()
    {
        using var admin = await api.AdminAsync();
        var users = await api.RowsAsync("users");
        var huge = $$"""{"username":"huge-body","password":"password-123","role":"User","displayName":"{{new string('d', 1024 * 1024)}}"}""";
        await HttpAssert.ProblemAsync(await admin.PostAsync("/api/users", RawJson.Content(huge)), HttpStatusCode.RequestEntityTooLarge);
        Assert.Equal(users, await api.RowsAsync("users"));
    }

    public static TheoryData<string, string> BadCreateBodies => new()
    {
        { """{"username":"bad-1","password":"password-123","role":"User","colour":"red"}""", "colour" },
        { """{"username":42,"password":"password-123","role":"User"}""", "username" },
        { """{"username":"bad-1","password":"password-123","role":"User","displayName":["x"]}""", "displayName" },
        { """{"username":"bad-1","password":"password-123"}""", "$" },
        { """{"username":null,"password":"password-123","role":"User"}""", "username" },
        { """{"username":"bad one","password":"password-123","role":"User"}""", "username" },
        { """{"username":"ab","password":"password-123","role":"User"}""", "username" },
        { $$"""{"username":"{{new string('u', 65)}}","password":"password-123","role":"User"}""", "username" },
        { """{"username":"bad\u0000one","password":"password-123","role":"User"}""", "username" },
        { """{"username":"bad-1","password":"short-7","role":"User"}""", "password" },
        { $$"""{"username":"bad-1","password":"{{new string('p', 1025)}}","role":"User"}""", "password" },
        { """{"username":"bad-1","password":"password\u0000123","role":"User"}""", "password" },
        { """{"username":"bad-1","password":"password-123","role":"Superuser"}""", "role" },
        { """{"username":"bad-1","password":"password-123","role":"User","email":"not-an-email"}""", "email" },
        { $$"""{"username":"bad-1","password":"password-123","role":"User","email":"{{new string('e', 250)}}@x.io"}""", "email" },
        { $$"""{"username":"bad-1","password":"password-123","role":"User","displayName":"{{new string('d', 201)}}"}""", "displayName" },
        { """{"username":"bad-1","password":"password-123","role":"User","displayName":"a\u0000b"}""", "displayName" },
        { """{"username":"bad-1","password":"password-123","role":"User",""", "$" },
    };

    [Theory]
    [MemberData(nameof(BadCreateBodies))]
    public async Task Bad_input_when_creating_a_user_is_a_problem_naming_the_field_and_writes_nothing(string body, string field)
    {
        using var admin = await api.AdminAsync();
        var (users, activities) = (await api.RowsAsync("users"), await api.RowsAsync("activities"));

        await HttpAssert.ValidationProblemAsync(await admin.PostAsync("/api/users", RawJson.Content(body)), field);

        Assert.Equal(users, await api.RowsAsync("users"));
        Assert.Equal(activities, await api.RowsAsync("activities"));
    }

    [Fact]
    public async Task A_non_admin_cannot_create_delete_or_reset_others_and_nothing_changes()
    {
        using var user = await api.UserAsync();
        using var other = await api.NewUserClientAsync("untouchable", password: "untouchable-1");
        var otherId = await api.UserIdAsync("untouchable");
        var (users, activities) = (await api.RowsAsync("users"), await api.RowsAsync("activities"));
        var hash = await api.ScalarAsync<string>("SELECT password_hash FROM users WHERE id = @id", ("id", otherId));

        await HttpAssert.ProblemAsync(await user.PostAsJsonAsync("/api/users",
            new { username = "by-a-user", password = "password-123", role = "Admin" }), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await user.DeleteAsync($"/api/users/{otherId}"), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await user.PutAsJsonAsync($"/api/users/{otherId}/password",
            new { newPassword = "taken-over-1" }), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await user.PatchAsJsonAsync($"/api/users/{otherId}",
            new { displayName = "Renamed" }), HttpStatusCode.Forbidden);

        Assert.Equal(users, await api.RowsAsync("users"));
        Assert.Equal(activities, await api.RowsAsync("activities"));
        Assert.Equal(hash, await api.ScalarAsync<string>("SELECT password_hash FROM users WHERE id = @id", ("id", otherId)));
        Assert.Equal(HttpStatusCode.OK, (await other.GetAsync("/api/me")).StatusCode);
    }

    [Fact]
    public async Task Users_change_their_own_display_name_and_email_but_never_their_role_or_active_flag()
    {
        using var self = await api.NewUserClientAsync("self-editor");
        var id = await api.UserIdAsync("self-editor");

        var response = await self.PatchAsJsonAsync($"/api/users/{id}", new { displayName = "Self Editor", email = "self@example.com" });
        var body = await HttpAssert.ReadAsync<UserResponse>(response);
        Assert.Equal("Self Editor", body.DisplayName);
        Assert.Equal("self@example.com", body.Email);
        Assert.NotNull(response.Headers.ETag);

        var activities = await api.RowsAsync("activities");
        await HttpAssert.ProblemAsync(await self.PatchAsJsonAsync($"/api/users/{id}", new { role = "Admin" }), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await self.PatchAsJsonAsync($"/api/users/{id}", new { isActive = false }), HttpStatusCode.Forbidden);
        await HttpAssert.ProblemAsync(await self.PatchAsJsonAsync($"/api/users/{id}",
            new { displayName = "Sneaky", role = "User" }), HttpStatusCode.Forbidden);
        Assert.Equal("User|True|Self Editor", await api.ScalarAsync<string>(
            "SELECT r.name || '|' || (CASE WHEN u.is_active THEN 'True' ELSE 'False' END) || '|' || u.display_name "
            + "FROM users u JOIN roles r ON r.id = u.role_id WHERE u.id = @id",
            ("id", id)));
        Assert.Equal(activities, await api.RowsAsync("activities"));

        // An empty value clears; the change is logged without the values.
        var cleared = await HttpAssert.ReadAsync<UserResponse>(await self.PatchAsJsonAsync($"/api/users/{id}", new { email = "" }));
        Assert.Null(cleared.Email);
        var details = await api.ScalarAsync<string>(
            "SELECT details::text FROM activities WHERE action = 'user.updated' AND entity_id = @id ORDER BY created_at DESC LIMIT 1", ("id", id));
        Assert.Contains("email", details);
        Assert.DoesNotContain("self@example.com", details);
    }

    public static TheoryData<string, string> BadPatchBodies => new()
    {
        { """{"nickname":"x"}""", "nickname" },
        { """{"isActive":"yes"}""", "isActive" },
        { """{"role":"Root"}""", "role" },
        { """{"email":"nope"}""", "email" },
        { """{"displayName":"x\u0000y"}""", "displayName" },
        { $$"""{"displayName":"{{new string('d', 201)}}"}""", "displayName" },
    };

    [Theory]
    [MemberData(nameof(BadPatchBodies))]
    public async Task Bad_input_when_changing_a_user_is_a_problem_and_changes_nothing(string body, string field)
    {
        using var admin = await api.AdminAsync();
        var id = await api.UserIdAsync("user");
        var version = await api.ScalarAsync<string>("SELECT xmin::text FROM users WHERE id = @id", ("id", id));
        var activities = await api.RowsAsync("activities");

        await HttpAssert.ValidationProblemAsync(await admin.PatchAsync($"/api/users/{id}", RawJson.Content(body)), field);

        Assert.Equal(version, await api.ScalarAsync<string>("SELECT xmin::text FROM users WHERE id = @id", ("id", id)));
        Assert.Equal(activities, await api.RowsAsync("activities"));
    }

    [Fact]
    public async Task A_stale_if_match_is_412_and_changes_nothing()
    {
        using var admin = await api.AdminAsync();
        await api.NewUserClientAsync("etag-user");
        var id = await api.UserIdAsync("etag-user");
        var etag = (await admin.GetAsync($"/api/users/{id}")).Headers.ETag!;

        var first = new HttpRequestMessage(HttpMethod.Patch, $"/api/users/{id}") { Content = JsonContent.Create(new { displayName = "First" }) };
        first.Headers.IfMatch.Add(etag);
        var firstResponse = await admin.SendAsync(first);
        Assert.Equal(HttpStatusCode.OK, firstResponse.StatusCode);
        Assert.NotEqual(etag, firstResponse.Headers.ETag);

        var stale = new HttpRequestMessage(HttpMethod.Patch, $"/api/users/{id}") { Content = JsonContent.Create(new { displayName = "Second" }) };
        stale.Headers.IfMatch.Add(etag);
        await HttpAssert.ProblemAsync(await admin.SendAsync(stale), HttpStatusCode.PreconditionFailed);
        Assert.Equal("First", await api.ScalarAsync<string>("SELECT display_name FROM users WHERE id = @id", ("id", id)));

        var staleDelete = new HttpRequestMessage(HttpMethod.Delete, $"/api/users/{id}");
        staleDelete.Headers.IfMatch.Add(etag);
        await HttpAssert.ProblemAsync(await admin.SendAsync(staleDelete), HttpStatusCode.PreconditionFailed);
        Assert.Equal(0L, await api.RowsAsync($"users WHERE id = '{id}' AND deleted_at IS NOT NULL"));
    }

    [Fact]
    public async Task Changing_your_own_password_needs_the_current_one_and_revokes_your_tokens_at_once()
    {
        using var self = await api.NewUserClientAsync("changes-password", password: "old-password-1");
        var id = await api.UserIdAsync("changes-password");
        Assert.Equal(HttpStatusCode.OK, (await self.GetAsync("/api/me")).StatusCode); // the session is now cached
        var hash = await api.ScalarAsync<string>("SELECT password_hash FROM users WHERE id = @id", ("id", id));

        await HttpAssert.ValidationProblemAsync(await self.PutAsJsonAsync($"/api/users/{id}/password",
            new { newPassword = "new-password-1" }), "currentPassword");
        await HttpAssert.ValidationProblemAsync(await self.PutAsJsonAsync($"/api/users/{id}/password",
            new { currentPassword = "wrong-password", newPassword = "new-password-1" }), "currentPassword");
        await HttpAssert.ValidationProblemAsync(await self.PutAsJsonAsync($"/api/users/{id}/password",
            new { currentPassword = "old-password-1", newPassword = "short" }), "newPassword");
        await HttpAssert.ValidationProblemAsync(await self.PutAsync($"/api/users/{id}/password",
            RawJson.Content("""{"currentPassword":"old-password-1","newPassword":"new\u0000password"}""")), "newPassword");
        Assert.Equal(hash, await api.ScalarAsync<string>("SELECT password_hash FROM users WHERE id = @id", ("id", id)));
        Assert.Equal(HttpStatusCode.OK, (await self.GetAsync("/api/me")).StatusCode);

        var changed = await self.PutAsJsonAsync($"/api/users/{id}/password",
            new { currentPassword = "old-password-1", newPassword = "new-password-1" });
        Assert.Equal(HttpStatusCode.NoContent, changed.StatusCode);

        await HttpAssert.ProblemAsync(await self.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
            new { username = "changes-password", password = "old-password-1" }), HttpStatusCode.Unauthorized);
        using var again = await api.CreateClientAsync("changes-password", "new-password-1");
        Assert.Equal(HttpStatusCode.OK, (await again.GetAsync("/api/me")).StatusCode);

        var details = await api.ScalarAsync<string>(
            "SELECT details::text FROM activities WHERE action = 'user.password_changed' AND entity_id = @id", ("id", id));
        Assert.DoesNotContain("password-1", details);
    }

    [Fact]
    public async Task An_admin_resets_someone_elses_password_without_the_current_one_and_their_tokens_stop_working()
    {
        using var admin = await api.AdminAsync();
        using var forgetful = await api.NewUserClientAsync("forgetful", password: "forgotten-1");
        var id = await api.UserIdAsync("forgetful");
        Assert.Equal(HttpStatusCode.OK, (await forgetful.GetAsync("/api/me")).StatusCode);

        Assert.Equal(HttpStatusCode.NoContent,
            (await admin.PutAsJsonAsync($"/api/users/{id}/password", new { newPassword = "reset-by-admin-1" })).StatusCode);

        await HttpAssert.ProblemAsync(await forgetful.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
        using var again = await api.CreateClientAsync("forgetful", "reset-by-admin-1");
        Assert.Equal(HttpStatusCode.OK, (await again.GetAsync("/api/me")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/api/me")).StatusCode);
        await HttpAssert.ProblemAsync(await admin.PutAsJsonAsync($"/api/users/{Guid.CreateVersion7()}/password",
            new { newPassword = "reset-by-admin-1" }), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Deactivation_revokes_tokens_at_once_and_reactivation_lets_the_user_sign_in_again()
    {
        using var admin = await api.AdminAsync();
        using var client = await api.NewUserClientAsync("deactivated", password: "deactivated-1");
        var id = await api.UserIdAsync("deactivated");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/me")).StatusCode);

        var off = await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}", new { isActive = false }));
        Assert.False(off.IsActive);

        await HttpAssert.ProblemAsync(await client.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
            new { username = "deactivated", password = "deactivated-1" }), HttpStatusCode.Unauthorized);

        await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}", new { isActive = true }));
        await HttpAssert.ProblemAsync(await client.GetAsync("/api/me"), HttpStatusCode.Unauthorized); // old tokens stay revoked
        using var again = await api.CreateClientAsync("deactivated", "deactivated-1");
        Assert.Equal(HttpStatusCode.OK, (await again.GetAsync("/api/me")).StatusCode);
        Assert.Equal(2L, await api.RowsAsync($"activities WHERE action = 'user.updated' AND entity_id = '{id}'"));
    }

    [Fact]
    public async Task A_role_change_takes_effect_with_the_next_request()
    {
        using var admin = await api.AdminAsync();
        using var client = await api.NewUserClientAsync("promoted-then-demoted");
        var id = await api.UserIdAsync("promoted-then-demoted");
        await HttpAssert.ProblemAsync(await client.GetAsync("/api/users"), HttpStatusCode.Forbidden);

        await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}", new { role = "Admin" }));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/users")).StatusCode);

        // Demoting back leaves this class's database with one system Admin again.
        await HttpAssert.ReadAsync<UserResponse>(await admin.PatchAsJsonAsync($"/api/users/{id}", new { role = "User" }));
        await HttpAssert.ProblemAsync(await client.GetAsync("/api/users"), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Deleting_a_user_revokes_their_tokens_removes_their_memberships_and_keeps_the_username_reserved()
    {
        using var admin = await api.AdminAsync();
        using var doomed = await api.NewUserClientAsync("doomed", password: "doomed-password");
        var id = await api.UserIdAsync("doomed");
        Assert.Equal(HttpStatusCode.Created,
            (await admin.PutAsJsonAsync("/api/workspaces/twsbp/members/doomed", new { role = "Viewer" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await doomed.GetAsync("/api/workspaces/twsbp")).StatusCode);
        var memberCount = await api.ScalarAsync<int>("SELECT member_count FROM workspaces WHERE slug = 'twsbp'");

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/users/{id}")).StatusCode);

        await HttpAssert.ProblemAsync(await doomed.GetAsync("/api/me"), HttpStatusCode.Unauthorized);
        using var anonymous = api.CreateAnonymousClient();
        await HttpAssert.ProblemAsync(await anonymous.PostAsJsonAsync("/api/auth/token",
            new { username = "doomed", password = "doomed-password" }), HttpStatusCode.Unauthorized);
        await HttpAssert.ProblemAsync(await admin.GetAsync($"/api/users/{id}"), HttpStatusCode.NotFound);
        await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/users/{id}"), HttpStatusCode.NotFound);
        Assert.DoesNotContain((await ListAsync(admin, "pageSize=200")).Items, u => u.Username == "doomed");

        var reuse = await HttpAssert.ProblemAsync(await admin.PostAsJsonAsync("/api/users",
            new { username = "Doomed", password = "password-123", role = "User" }), HttpStatusCode.Conflict);
        Assert.Equal("username", reuse.GetProperty("field").GetString());

        Assert.Equal(1L, await api.RowsAsync($"users WHERE id = '{id}' AND deleted_at IS NOT NULL"));
        Assert.Equal(0L, await api.RowsAsync($"workspace_members WHERE user_id = '{id}'"));
        Assert.Equal(memberCount - 1, await api.ScalarAsync<int>("SELECT member_count FROM workspaces WHERE slug = 'twsbp'"));
        Assert.Equal(1L, await api.RowsAsync($"activities WHERE action = 'user.deleted' AND entity_id = '{id}' AND workspace_id IS NULL"));
        Assert.Equal(1L, await api.RowsAsync($"activities WHERE action = 'member.removed' AND entity_id = '{id}' AND workspace_id IS NOT NULL"));
    }

    [Fact]
    public async Task The_only_owner_of_a_workspace_cannot_be_deleted_until_someone_else_owns_it()
    {
        using var admin = await api.AdminAsync();
        using var owner = await api.NewUserClientAsync("sole-owner");
        var id = await api.UserIdAsync("sole-owner");
        Assert.Equal(HttpStatusCode.Created, (await owner.PostAsJsonAsync("/api/workspaces", new { name = "Solo", slug = "solo-owned" })).StatusCode);

        var refused = await HttpAssert.ProblemAsync(await admin.DeleteAsync($"/api/users/{id}"), HttpStatusCode.Conflict);
        Assert.Contains("solo-owned", refused.GetProperty("detail").GetString());
        Assert.Equal(0L, await api.RowsAsync($"users WHERE id = '{id}' AND deleted_at IS NOT NULL"));
        Assert.Equal(HttpStatusCode.OK, (await owner.GetAsync("/api/me")).StatusCode);

        Assert.Equal(HttpStatusCode.Created,
            (await owner.PutAsJsonAsync("/api/workspaces/solo-owned/members/user", new { role = "Owner" })).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/users/{id}")).StatusCode);
        Assert.Equal(1, await api.ScalarAsync<int>("SELECT member_count FROM workspaces WHERE slug = 'solo-owned'"));
    }

    [Fact]
    public async Task Malformed_ids_never_reach_a_handler()
    {
        using var admin = await api.AdminAsync();
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync("/api/users/not-a-guid")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.DeleteAsync("/api/users/123")).StatusCode);
    }

    [Fact]
    public async Task A_token_sent_without_the_bearer_scheme_is_401()
    {
        using var client = api.CreateAnonymousClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", "YWRtaW46YWRtaW4=");
        await HttpAssert.ProblemAsync(await client.GetAsync("/api/users"), HttpStatusCode.Unauthorized);
    }
}
