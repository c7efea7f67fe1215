using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using TcStudio.Tests.Infrastructure;
using TcStudio.Tests.Observability.Support;

namespace TcStudio.Tests.Observability;

/// <summary>With OTEL_EXPORTER_OTLP_ENDPOINT set, the API exports its traces over OTLP/HTTP to a collector.</summary>
public sealed class OtlpExportTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task A_request_that_queries_the_database_is_exported_with_the_Npgsql_span_as_its_child()
    {
        await using var collector = new OtlpReceiver();
        await using var api = new ObservedApiFactory(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = database.ConnectionString,
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_SERVICE_NAME"] = "tcstudio-api-under-test",
        });
        using var client = api.CreateClient();

        (await client.GetAsync("/health")).EnsureSuccessStatusCode();
        (await client.GetAsync("/test/db")).EnsureSuccessStatusCode();
        api.Services.GetRequiredService<TracerProvider>().ForceFlush(10_000);

        ExportedSpan? request = null, query = null;
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            var spans = collector.Spans;
            request = spans.FirstOrDefault(s => s.Scope == "Microsoft.AspNetCore" && s.Name == "GET /db");
            query = request is null ? null : spans.FirstOrDefault(s => s.Scope == "Npgsql" && s.ParentSpanId == request.SpanId);
            if (query is not null) break;
            await Task.Delay(200);
        }

        Assert.NotNull(request);
        Assert.NotNull(query);
        Assert.Equal(ExportedSpan.ServerKind, request.Kind);
        Assert.Equal(ExportedSpan.ClientKind, query.Kind);
        Assert.Equal(request.TraceId, query.TraceId);
        Assert.Equal("tcstudio-api-under-test", request.ServiceName);
        // Probes are kept out of traces.
        Assert.DoesNotContain(collector.Spans, s => s.Scope == "Microsoft.AspNetCore" && s.Name.Contains("health"));
    }
}
