using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Mvc.Testing;
using TcStudio.LocalPostgres;

namespace TcStudio.Benchmarks.Harness;

/// <summary>
/// The real API (its own Program: configuration, startup checks, middleware, endpoints) hosted in the benchmark's
/// process on Kestrel and a real loopback socket, so the load generator's requests cross the network stack like a
/// client's. Production environment, the product's defaults; only what a deployment must set is set here (the
/// connection string, a signing key), the general rate limit raised (see <see cref="RateLimitDescription"/>), plus
/// whatever a scenario varies (the pool size).
/// </summary>
public sealed class ApiHost : IAsyncDisposable
{
    private readonly WebApplicationFactory<Program> _factory;

    private ApiHost(WebApplicationFactory<Program> factory, string baseUrl, string signingKey, string connectionString)
    {
        _factory = factory;
        BaseUrl = baseUrl;
        SigningKey = signingKey;
        ConnectionString = connectionString;
    }

    public string BaseUrl { get; }

    /// <summary>The API's Auth:SigningKey (base64): the HTTP baseline validates the same tokens with it.</summary>
    public string SigningKey { get; }

    /// <summary>What the API connects with (the app role, subject to row-level security).</summary>
    public string ConnectionString { get; }

    private const string RaisedRateLimit = "1000000";

    /// <summary>For the report's header: how the API's general rate limit is set in every run.</summary>
    public const string RateLimitDescription =
        "general rate limit on, raised to " + RaisedRateLimit + " requests/s per user and per address (never refuses; its cost is in every figure)";
    public IServiceProvider Services => _factory.Services;

    public static async Task<ApiHost> StartAsync(string connectionString, IReadOnlyDictionary<string, string?>? settings = null)
    {
        var port = LocalPostgresCluster.FindFreePort();
        var signingKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));
        var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(web =>
        {
            web.UseEnvironment("Production");
            web.UseSetting("ConnectionStrings:tcstudio", connectionString);
            web.UseSetting("Auth:SigningKey", signingKey);
            web.UseSetting("Workspaces:SecretKey", Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
            // The console is the benchmark's report: the API's console logger keeps to warnings (its other log
            // providers, OpenTelemetry's included, stay as configured).
            web.UseSetting("Logging:Console:LogLevel:Default", "Warning");
            // The load generator is one client address and signs in as one user: with the product's limits (300 and 100
            // requests a second) the limiter would refuse most requests. It stays on, raised so it never refuses, so its
            // cost per request is part of every figure.
            web.UseSetting("RateLimit:PermitsPerSecondPerUser", RaisedRateLimit);
            web.UseSetting("RateLimit:PermitsPerSecondPerAddress", RaisedRateLimit);
            foreach (var (key, value) in settings ?? new Dictionary<string, string?>()) web.UseSetting(key, value);
        });
        factory.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));
        await Task.Run(factory.StartServer);
        var host = new ApiHost(factory, $"http://127.0.0.1:{port}", signingKey, connectionString);
        await host.WaitHealthyAsync();
        return host;
    }

    private async Task WaitHealthyAsync()
    {
        using var http = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var response = await http.GetAsync("/health");
                if (response.IsSuccessStatusCode) return;
                last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Refused, or slower than 5 s on a loaded machine: ask again until the deadline.
                last = e.Message;
            }
            await Task.Delay(100);
        }
        throw new InvalidOperationException($"The API did not become healthy: {last}");
    }

    /// <summary>An HttpClient for setup calls (not for measurements: those go through the load generator).</summary>
    public HttpClient CreateClient(string? token = null)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl) };
        if (token is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    public async Task<string> LoginAsync(string username, string password)
    {
        using var client = CreateClient();
        var response = await client.PostAsJsonAsync("/api/auth/token", new { username, password });
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Login as {username} failed: {(int)response.StatusCode} "
                + $"{await response.Content.ReadAsStringAsync()}");
        }
        var body = await response.Content.ReadFromJsonAsync<TokenBody>();
        return body!.AccessToken;
    }

    /// <summary>
    /// Whether a route exists yet: one request; a 404 or 405 whose body is not one of the API's own "not found"
    /// problems means the endpoint has not landed.
    /// </summary>
    public async Task<(bool Available, string Detail)> ProbeAsync(string token, HttpMethod method, string path, object? body = null)
    {
        using var client = CreateClient(token);
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonContent.Create(body);
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        var status = (int)response.StatusCode;
        if (status is 404 or 405 && !text.Contains("\"detail\"", StringComparison.Ordinal))
        {
            return (false, $"{method} {Route(path)} answers {status}: the endpoint is not in this build yet");
        }
        return (response.IsSuccessStatusCode,
            $"{method} {Route(path)} answered {status}{(response.IsSuccessStatusCode ? "" : ": " + Truncate(text))}");
    }

    private static string Route(string path) => path.Split('?')[0];

    private static string Truncate(string text) => text.Length > 300 ? text[..300] + "…" : text;

    private sealed record TokenBody(string AccessToken, DateTimeOffset ExpiresAt);

    public async ValueTask DisposeAsync() => await _factory.DisposeAsync();
}
