using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TcStudio.Tests.Observability.Support;

/// <summary>
/// The real API (its Program) with test settings, its log lines kept in <see cref="Logs"/>, and two test-only
/// endpoints that touch the database (the API has none of its own yet): <c>GET /test/db</c> (a quick query) and
/// <c>GET /test/slow/{id}?marker=…</c> (a parameterised query that sleeps for <c>seconds</c>).
/// </summary>
public sealed class ObservedApiFactory(IReadOnlyDictionary<string, string?> settings) : WebApplicationFactory<Program>
{
    public LogSink Logs { get; } = new();

    /// <summary>Where /metrics is served (its own listener), when Prometheus is on.</summary>
    public Uri MetricsUrl =>
        new(Services.GetRequiredService<TcStudio.ServiceDefaults.PrometheusScrapeListener>().Address
            ?? throw new InvalidOperationException("The Prometheus scrape listener is not listening."), "/metrics");

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        // Development serves /metrics on its own listener, 127.0.0.1:9464 by default: a free port for each host here.
        builder.UseSetting("Telemetry:Prometheus:Url", "http://127.0.0.1:0");
        foreach (var (key, value) in settings) builder.UseSetting(key, value);
        builder.ConfigureServices(services =>
        {
            services.AddLogging(logging => logging.AddProvider(Logs));
            services.AddSingleton<IStartupFilter, TestEndpoints>();
        });
    }

    private sealed class TestEndpoints : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Map("/test", branch =>
            {
                branch.UseRouting();
                branch.UseEndpoints(endpoints =>
                {
                    endpoints.MapGet("/db", async (NpgsqlDataSource dataSource) =>
                    {
                        await using var command = dataSource.CreateCommand("SELECT count(*) FROM roles");
                        return Results.Ok((long)(await command.ExecuteScalarAsync())!);
                    });
                    endpoints.MapGet("/slow/{id:int}", async (int id, string marker, double seconds, NpgsqlDataSource dataSource) =>
                    {
                        await using var command = dataSource.CreateCommand(
                            "SELECT pg_sleep(@seconds), @marker::text, @id::int");
                        command.Parameters.AddWithValue("seconds", seconds);
                        command.Parameters.AddWithValue("marker", marker);
                        command.Parameters.AddWithValue("id", id);
                        await command.ExecuteNonQueryAsync();
                        return Results.Ok();
                    });
                });
            });
            next(app);
        };
    }
}
