using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TcStudio.SystemDatabase.Security;
using TcStudio.SystemDatabase.Seeding;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// The real API (its whole HTTP pipeline, through WebApplicationFactory) over a fresh, migrated and seeded system
/// database of its own, for one test class. Clients log in through POST /api/auth/token like any consumer.
/// </summary>
public class ApiFixture(PostgresServer server) : SystemDatabaseFixture(server)
{
    public const string AdminPassword = "admin-test-password";
    public const string UserPassword = "user-test-password";

    private WebApplicationFactory<Program>? _factory;

    /// <summary>The API's Workspaces:SecretKey (base64 of 32 bytes), so tests can read what it encrypted.</summary>
    public string WorkspaceSecretKey { get; } = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>A slug no other test uses: the prefix, a dash and random hex, 20 characters in all.</summary>
    public static string NewSlug(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..20];

    /// <summary>
    /// A new workspace owned by <paramref name="owner"/>, named <paramref name="name"/> (the prefix when absent), with a
    /// slug from <see cref="NewSlug"/>; returns what POST /api/workspaces answered.
    /// </summary>
    public static async Task<TcStudio.Api.Workspaces.WorkspaceDetails> NewWorkspaceAsync(HttpClient owner, string prefix, string? name = null) =>
        await HttpAssert.ReadAsync<TcStudio.Api.Workspaces.WorkspaceDetails>(
            await owner.PostAsJsonAsync("/api/workspaces", new { name = name ?? prefix, slug = NewSlug(prefix) }), System.Net.HttpStatusCode.Created);

    public WebApplicationFactory<Program> Factory => _factory ?? throw new InvalidOperationException("Not initialized.");

    private readonly string _appPassword = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    /// <summary>The system database's roles (the worker's <c>roles</c> verb creates them before the API starts).</summary>
    public SystemRoleNames RoleNames => SystemRoleNames.For(DatabaseName);

    /// <summary>
    /// What the API signs in with: the system database's app role, as in production (no superuser, no BYPASSRLS,
    /// subject to row-level security). Tests arrange and inspect data with the fixture's superuser.
    /// </summary>
    protected virtual string ApiConnectionString => new NpgsqlConnectionStringBuilder(ConnectionString)
    {
        Username = RoleNames.App, Password = _appPassword,
    }.ConnectionString;

    /// <summary>Extra settings a derived fixture wants (e.g. lower rate limits).</summary>
    protected virtual IEnumerable<KeyValuePair<string, string?>> Settings => [];

    /// <summary>Runs after the system database exists and before the API starts (e.g. to bootstrap a workspace server).</summary>
    protected virtual Task BeforeApiStartsAsync() => Task.CompletedTask;

    /// <summary>Services a derived fixture adds or replaces in the API (test hooks).</summary>
    protected virtual void ConfigureServices(IServiceCollection services) { }

    /// <summary>Called before the host starts, e.g. to host it on Kestrel.</summary>
    protected virtual void ConfigureFactory(WebApplicationFactory<Program> factory) { }

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        if (ApiConnectionString != ConnectionString)
        {
            await SystemDatabaseRoles.EnsureAsync(ConnectionString, RoleNames, new SystemDatabaseRoles.Passwords(null, _appPassword, null));
        }
        await BeforeApiStartsAsync();
        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(web =>
        {
            web.UseEnvironment("Test");
            web.UseSetting("ConnectionStrings:tcstudio", ApiConnectionString);
            web.UseSetting("Auth:SigningKey", Convert.ToBase64String(RandomNumberGenerator.GetBytes(48)));
            web.UseSetting("Seed:AdminPassword", AdminPassword);
            web.UseSetting("Seed:UserPassword", UserPassword);
            web.UseSetting("Database:StartupTimeout", "00:00:20");
            web.UseSetting("Workspaces:SecretKey", WorkspaceSecretKey);
            // Sessions checked once per test class run: query counts stay exact (no periodic session lookup), and
            // changes made through the API revoke tokens at once anyway (UserSessions.Forget).
            web.UseSetting("Auth:SessionCheckInterval", "01:00:00");
            // Deliberately high general rate limits: scenarios here send hundreds of requests a second from one
            // client, and are not about the limiter (RateLimitTests are, with low limits of their own). It stays on,
            // so every test goes through it.
            web.UseSetting("RateLimit:PermitsPerSecondPerUser", "1000000");
            web.UseSetting("RateLimit:PermitsPerSecondPerAddress", "1000000");
            // The "Test" environment is not Development: the OpenAPI document (which some tests read) is switched on.
            web.UseSetting("Api:OpenApi:Enabled", "true");
            // Test classes create many workspaces and environments as one user; the quota tests set their own.
            web.UseSetting("Quotas:WorkspacesPerUser", "10000");
            web.UseSetting("Quotas:EnvironmentsPerWorkspace", "1000");
            web.UseSetting("Workspaces:Limits:ConcurrentExecutions", "1000");
            foreach (var (key, value) in Settings) web.UseSetting(key, value);
            web.ConfigureTestServices(ConfigureServices);
        });
        ConfigureFactory(_factory);
        await using var scope = _factory.Services.CreateAsyncScope();
        if (ApiConnectionString == ConnectionString)
        {
            await scope.ServiceProvider.GetRequiredService<SystemSeeder>().SeedAsync();
        }
        else
        {
            // Seeding is the owner's work (the worker's in production), not the API's: seed with the fixture's
            // superuser, with the API's seed settings.
            await using var seedDb = CreateDbContext();
            await new SystemSeeder(seedDb,
                scope.ServiceProvider.GetRequiredService<Microsoft.Extensions.Options.IOptions<TcStudio.SystemDatabase.Seeding.SeedOptions>>(),
                scope.ServiceProvider.GetRequiredService<Microsoft.Extensions.Hosting.IHostEnvironment>(),
                scope.ServiceProvider.GetService<TcStudio.SystemDatabase.Seeding.IDefaultWorkspaceServer>()).SeedAsync();
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (_factory is not null) await _factory.DisposeAsync();
        await base.DisposeAsync();
    }

    public HttpClient CreateAnonymousClient() => Factory.CreateClient();

    public async Task<string> LoginAsync(string username, string password)
    {
        using var client = CreateAnonymousClient();
        return await TokenAsync(client, username, password);
    }

    /// <summary>A bearer token from POST /api/auth/token on any client (an in-memory host, a process, a loopback peer).</summary>
    public static async Task<string> TokenAsync(HttpClient client, string username, string password) =>
        (await HttpAssert.ReadAsync<TcStudio.Api.Auth.TokenResponse>(
            await client.PostAsJsonAsync("/api/auth/token", new { username, password }))).AccessToken;

    /// <summary>Signs <paramref name="client"/> in: its later requests carry the user's bearer token.</summary>
    public static async Task<HttpClient> SignInAsync(HttpClient client, string username, string password)
    {
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await TokenAsync(client, username, password));
        return client;
    }

    public Task<HttpClient> CreateClientAsync(string username, string password) =>
        SignInAsync(CreateAnonymousClient(), username, password);

    public Task<HttpClient> AdminAsync() => CreateClientAsync(SystemSeeder.AdminUsername, AdminPassword);
    public Task<HttpClient> UserAsync() => CreateClientAsync(SystemSeeder.UserUsername, UserPassword);

    /// <summary>Creates a user through the database (the users API has tests of its own) and returns a client for them.</summary>
    public async Task<HttpClient> NewUserClientAsync(string username, string role = "User", string password = "a-password-123")
    {
        await using var db = CreateDbContext();
        var roleId = await Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.SingleAsync(
            db.Roles.Where(r => r.Name == role).Select(r => r.Id));
        db.Users.Add(new TcStudio.SystemDatabase.Entities.User { Username = username,
            PasswordHash = TcStudio.SystemDatabase.PasswordHashing.Hash(password), RoleId = roleId });
        await db.SaveChangesAsync();
        return await CreateClientAsync(username, password);
    }
}
