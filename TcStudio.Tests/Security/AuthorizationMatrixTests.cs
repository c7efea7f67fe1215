using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using TcStudio.Api.Users;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Security;

/// <summary>
/// Every route of the API (read from the endpoint data source: a new route without a row below fails the test) ×
/// seven callers × their own workspace and another one. The expected statuses are written here by hand from what each
/// role is meant to do (README, "What a user can and cannot do"), never read from the product's permission table, so
/// a wrong entry there shows up here. Requests are built so that an allowed caller changes nothing: wrong If-Match
/// (412), invalid bodies (400), names that do not exist (404 after authorization), the last Owner (409).
/// </summary>
public sealed class AuthorizationMatrixTests(WorkspaceApiFixture api) : IClassFixture<WorkspaceApiFixture>
{
    private enum Caller { Anonymous, PlainUser, Viewer, Member, WorkspaceAdmin, Owner, SystemAdmin }

    private static readonly Caller[] Callers = Enum.GetValues<Caller>();

    /// <summary>One route: how to call it, and the status each caller gets in their own workspace (in <see cref="Callers"/> order).</summary>
    private sealed record Row(string Path, string Own, object? Body = null, bool WrongIfMatch = false);

    private const string Procedure = "matrix_report";
    private const string Secret = "matrix_secret_marker";
    private const string NoSuchUser = "00000000-0000-7000-8000-000000000001";

    //                                                              anon user view memb admn ownr sysa
    private static readonly Dictionary<string, Row> Expected = new()
    {
        ["POST /api/auth/token"] = new("/api/auth/token", "400 400 400 400 400 400 400", Body: new { username = "", password = "" }),
        ["GET /api/me"] = new("/api/me", "401 200 200 200 200 200 200"),
        ["GET /api/roles"] = new("/api/roles", "401 200 200 200 200 200 200"),
        ["GET /api/users/"] = new("/api/users", "401 403 403 403 403 403 200"),
        ["POST /api/users/"] = new("/api/users", "401 403 403 403 403 403 400", Body: new { username = "x", password = "x", role = "Emperor" }),
        ["GET /api/users/{id:guid}"] = new($"/api/users/{NoSuchUser}", "401 403 403 403 403 403 404"),
        ["PATCH /api/users/{id:guid}"] = new($"/api/users/{NoSuchUser}", "401 403 403 403 403 403 404", Body: new { }),
        ["DELETE /api/users/{id:guid}"] = new($"/api/users/{NoSuchUser}", "401 403 403 403 403 403 404"),
        ["PUT /api/users/{id:guid}/password"] = new($"/api/users/{NoSuchUser}/password", "401 403 403 403 403 403 400",
            Body: new { newPassword = "x" }),
        ["GET /api/workspaces/"] = new("/api/workspaces", "401 200 200 200 200 200 200"),
        ["POST /api/workspaces/"] = new("/api/workspaces", "401 400 400 400 400 400 400", Body: new { name = "", slug = "NOT A SLUG" }),
        ["GET /api/workspace-servers"] = new("/api/workspace-servers", "401 200 200 200 200 200 200"),
        ["GET /api/admin/database/overview"] = new("/api/admin/database/overview", "401 403 403 403 403 403 200"),
        ["GET /api/admin/database/slow-queries"] = new("/api/admin/database/slow-queries", "401 403 403 403 403 403 200"),
        ["GET /api/admin/database/tables"] = new("/api/admin/database/tables", "401 403 403 403 403 403 200"),
        ["GET /api/admin/database/indexes"] = new("/api/admin/database/indexes", "401 403 403 403 403 403 200"),
        ["GET /api/admin/database/long-running"] = new("/api/admin/database/long-running", "401 403 403 403 403 403 200"),

        // The workspace scope: a non-member gets 404 whatever the route (existence does not leak).
        ["GET /api/workspaces/{slug}/"] = new("/api/workspaces/{slug}", "401 404 200 200 200 200 200"),
        ["PATCH /api/workspaces/{slug}/"] = new("/api/workspaces/{slug}", "401 404 403 403 412 412 412", Body: new { name = "x" },
            WrongIfMatch: true),
        ["DELETE /api/workspaces/{slug}/"] = new("/api/workspaces/{slug}", "401 404 403 403 403 412 412", WrongIfMatch: true),
        ["GET /api/workspaces/{slug}/activities"] = new("/api/workspaces/{slug}/activities", "401 404 200 200 200 200 200"),
        ["GET /api/workspaces/{slug}/events"] = new("/api/workspaces/{slug}/events", "401 404 200 200 200 200 200"),
        ["GET /api/workspaces/{slug}/members/"] = new("/api/workspaces/{slug}/members", "401 404 200 200 200 200 200"),
        ["GET /api/workspaces/{slug}/members/{username}"] = new("/api/workspaces/{slug}/members/{owner}", "401 404 200 200 200 200 200"),
        ["PUT /api/workspaces/{slug}/members/{username}"] = new("/api/workspaces/{slug}/members/{owner}", "401 404 403 403 400 400 400",
            Body: new { role = "Emperor" }),
        // Only an Owner (or a system Admin) touches Owners, and the last Owner stays.
        ["DELETE /api/workspaces/{slug}/members/{username}"] = new("/api/workspaces/{slug}/members/{owner}", "401 404 403 403 403 409 409"),
        ["GET /api/workspaces/{slug}/environments/"] = new("/api/workspaces/{slug}/environments", "401 404 200 200 200 200 200"),
        ["POST /api/workspaces/{slug}/environments/"] = new("/api/workspaces/{slug}/environments", "401 404 403 403 400 400 400",
            Body: new { name = "NOT A NAME", server = "local", databaseName = "1bad" }),
        // Attaching an existing database is for system Admins only, even for the workspace's Owner.
        ["POST /api/workspaces/{slug}/environments/{env}/adopt"] = new("/api/workspaces/{slug}/environments/nope/adopt",
            "401 404 403 403 403 403 400",
            Body: new { server = "local", databaseName = "1bad" }),
        ["GET /api/workspaces/{slug}/environments/{env}"] = new("/api/workspaces/{slug}/environments/dev", "401 404 200 200 200 200 200"),
        ["PATCH /api/workspaces/{slug}/environments/{env}"] = new("/api/workspaces/{slug}/environments/dev", "401 404 403 403 200 200 200",
            Body: new { }),
        ["DELETE /api/workspaces/{slug}/environments/{env}"] = new("/api/workspaces/{slug}/environments/nope", "401 404 403 403 404 404 404"),
        ["POST /api/workspaces/{slug}/environments/{env}/migrate"] = new("/api/workspaces/{slug}/environments/nope/migrate",
            "401 404 403 403 404 404 404"),
        ["GET /api/workspaces/{slug}/environments/{env}/status"] = new("/api/workspaces/{slug}/environments/dev/status",
            "401 404 200 200 200 200 200"),
        ["GET /api/workspaces/{slug}/procedures/"] = new("/api/workspaces/{slug}/procedures", "401 404 200 200 200 200 200"),
        ["POST /api/workspaces/{slug}/procedures/"] = new("/api/workspaces/{slug}/procedures", "401 404 403 400 400 400 400",
            Body: new { name = "1bad", sql = "SELECT 1" }),
        ["GET /api/workspaces/{slug}/procedures/{name}"] = new($"/api/workspaces/{{slug}}/procedures/{Procedure}", "401 404 200 200 200 200 200"),
        ["PUT /api/workspaces/{slug}/procedures/{name}"] = new($"/api/workspaces/{{slug}}/procedures/{Procedure}", "401 404 403 412 412 412 412",
            Body: new { sql = "CREATE FUNCTION matrix_report() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;" }, WrongIfMatch: true),
        ["DELETE /api/workspaces/{slug}/procedures/{name}"] = new($"/api/workspaces/{{slug}}/procedures/{Procedure}", "401 404 403 412 412 412 412",
            WrongIfMatch: true),
        ["POST /api/workspaces/{slug}/procedures/{name}/validate"] = new($"/api/workspaces/{{slug}}/procedures/{Procedure}/validate",
            "401 404 403 400 400 400 400"),
        ["POST /api/workspaces/{slug}/procedures/{name}/publish"] = new($"/api/workspaces/{{slug}}/procedures/{Procedure}/publish",
            "401 404 403 403 400 400 400"),
        ["POST /api/workspaces/{slug}/procedures/{name}/execute"] = new($"/api/workspaces/{{slug}}/procedures/{Procedure}/execute",
            "401 404 403 400 400 400 400"),

        // Outside /api: probes and the API description are public.
        ["GET /health"] = new("/health", "200 200 200 200 200 200 200"),
        ["GET /alive"] = new("/alive", "200 200 200 200 200 200 200"),
        ["GET /openapi/{documentName}.json"] = new("/openapi/v1.json", "200 200 200 200 200 200 200"),
        ["GET /scalar/{documentName?}"] = new("/scalar/v1", "200 200 200 200 200 200 200"),
        ["GET /scalar/scalar.js"] = new("/scalar/scalar.js", "200 200 200 200 200 200 200"),
        ["GET /scalar/scalar.aspnetcore.js"] = new("/scalar/scalar.aspnetcore.js", "200 200 200 200 200 200 200"),
        ["GET /scalar/favicon.svg"] = new("/scalar/favicon.svg", "200 200 200 200 200 200 200"),
    };

    private sealed record Workspace(string Slug, string Owner, string Database);

    [Fact]
    public async Task Every_route_answers_every_caller_as_the_table_says_and_non_members_see_no_data()
    {
        var routes = api.Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"]).Select(m => $"{m} {e.RoutePattern.RawText}"))
            .Distinct().Order().ToList();
        var missing = routes.Where(r => !Expected.ContainsKey(r)).ToList();
        Assert.True(missing.Count == 0, "routes without a row in the authorization matrix: " + string.Join(", ", missing));
        var stale = Expected.Keys.Where(k => !routes.Contains(k)).ToList();
        Assert.True(stale.Count == 0, "matrix rows for routes that no longer exist: " + string.Join(", ", stale));

        var clients = new Dictionary<Caller, HttpClient>
        {
            [Caller.Anonymous] = api.CreateAnonymousClient(),
            [Caller.PlainUser] = await NewUserAsync("plain"),
            [Caller.Viewer] = await NewUserAsync("viewer"),
            [Caller.Member] = await NewUserAsync("member"),
            [Caller.WorkspaceAdmin] = await NewUserAsync("wsadmin"),
            [Caller.Owner] = await NewUserAsync("owner"),
            [Caller.SystemAdmin] = await api.AdminAsync(),
        };
        var own = await NewWorkspaceWithSecretProcedureAsync(clients[Caller.Owner], "mx-own");
        foreach (var (caller, role) in new[] { (Caller.Viewer, "Viewer"), (Caller.Member, "Member"), (Caller.WorkspaceAdmin, "Admin") })
        {
            await AddMemberAsync(own.Slug, clients[caller], role);
        }
        using var otherOwner = await NewUserAsync("other");
        var other = await NewWorkspaceWithSecretProcedureAsync(otherOwner, "mx-other");

        var failures = new List<string>();
        foreach (var (route, row) in Expected.OrderBy(e => e.Key))
        {
            var scoped = row.Path.Contains("{slug}");
            var statuses = row.Own.Split(' ').Select(int.Parse).ToArray();
            for (var i = 0; i < Callers.Length; i++)
            {
                var caller = Callers[i];
                foreach (var (workspace, isOwn) in new[] { (own, true), (other, false) })
                {
                    if (!scoped && !isOwn) continue;
                    // In another workspace: signed-in callers who are not system Admins are not members there.
                    var expected = isOwn || caller is Caller.Anonymous or Caller.SystemAdmin ? statuses[i] : 404;
                    var response = await SendAsync(clients[caller], route, row, workspace);
                    // The problem's "instance" echoes the path the caller sent; anything else is the server's. A stream
                    // (text/event-stream) is judged by its status and headers: its body never ends.
                    using var _ = response;
                    var streaming = response.Content.Headers.ContentType?.MediaType == "text/event-stream";
                    var body = streaming
                        ? ""
                        : (await response.Content.ReadAsStringAsync()).Replace(response.RequestMessage!.RequestUri!.AbsolutePath, "");
                    if ((int)response.StatusCode != expected)
                    {
                        failures.Add($"{route} as {caller} in {(isOwn ? "own" : "other")} workspace: "
                            + $"expected {expected}, got {(int)response.StatusCode} {Shorten(body)}");
                    }
                    if (response.Content.Headers.ContentType?.MediaType == "application/problem+json" && HttpAssert.MissingCode(body) is { } noCode)
                    {
                        failures.Add($"{route} as {caller}: {Shorten(noCode)}");
                    }
                    var member = isOwn && caller is Caller.Viewer or Caller.Member or Caller.WorkspaceAdmin or Caller.Owner;
                    if (scoped && !member && caller != Caller.SystemAdmin
                        && (body.Contains(Secret) || body.Contains(workspace.Database) || body.Contains(workspace.Owner)
                            || response.Content.Headers.ContentType?.MediaType is not (null or "application/problem+json")))
                    {
                        failures.Add($"{route} as {caller} in {(isOwn ? "own" : "other")} workspace: "
                            + $"a non-member's response carries data: {Shorten(body)}");
                    }
                }
            }
        }
        foreach (var client in clients.Values) client.Dispose();
        Assert.True(failures.Count == 0, $"{failures.Count} cell(s) differ from the matrix:\n" + string.Join("\n", failures));
    }

    private static Task<HttpResponseMessage> SendAsync(HttpClient client, string route, Row row, Workspace workspace)
    {
        var method = new HttpMethod(route[..route.IndexOf(' ')]);
        var request = new HttpRequestMessage(method, row.Path.Replace("{slug}", workspace.Slug).Replace("{owner}", workspace.Owner));
        if (row.Body is not null) request.Content = JsonContent.Create(row.Body);
        if (row.WrongIfMatch) request.Headers.IfMatch.Add(new EntityTagHeaderValue("\"1\""));
        return client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    }

    private static string Shorten(string body) => body.Length <= 300 ? body : body[..300] + "…";

    private async Task<HttpClient> NewUserAsync(string prefix) => await api.NewUserClientAsync($"{prefix}-{Guid.NewGuid():N}"[..20]);

    /// <summary>A workspace its owner created through the API, with environment dev and a procedure (whose SQL is the marker).</summary>
    private async Task<Workspace> NewWorkspaceWithSecretProcedureAsync(HttpClient owner, string prefix)
    {
        var (slug, database) = await api.NewWorkspaceWithEnvironmentAsync(owner, prefix);
        await WorkspaceApiFixture.CreateProcedureAsync(owner, slug, Procedure,
            $"CREATE FUNCTION {Procedure}() RETURNS text LANGUAGE sql AS $$ SELECT '{Secret}' $$;");
        var me = await HttpAssert.ReadAsync<MeResponse>(await owner.GetAsync("/api/me"));
        return new Workspace(slug, me.Username, database);
    }

    private async Task AddMemberAsync(string slug, HttpClient client, string role)
    {
        var username = (await HttpAssert.ReadAsync<MeResponse>(await client.GetAsync("/api/me"))).Username;
        await api.ExecuteAsync($"""
            INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
            SELECT w.id, u.id, '{role}', now() FROM workspaces w, users u WHERE w.slug = '{slug}' AND u.username = '{username}'
            """);
    }
}
