using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc.Testing;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// Sends a request to the in-memory server with its headers exactly as given. HttpClient normalises some header
/// values on the way (a lowercase "w/" of an entity tag becomes "W/"), which a real client on the wire need not do.
/// </summary>
public static class RawTestServer
{
    public static async Task<HttpResponseMessage> SendAsync(WebApplicationFactory<Program> factory, HttpMethod method, string path,
        IEnumerable<(string Name, string Value)> headers, string? jsonBody = null)
    {
        var context = await factory.Server.SendAsync(http =>
        {
            http.Request.Method = method.Method;
            var query = path.IndexOf('?');
            http.Request.Path = query < 0 ? path : path[..query];
            if (query >= 0) http.Request.QueryString = new QueryString(path[query..]);
            foreach (var (name, value) in headers) http.Request.Headers.Append(name, value);
            if (jsonBody is not null)
            {
                var bytes = Encoding.UTF8.GetBytes(jsonBody);
                http.Request.ContentType = "application/json";
                http.Request.ContentLength = bytes.Length;
                http.Request.Body = new MemoryStream(bytes);
                http.Features.Set<Microsoft.AspNetCore.Http.Features.IHttpRequestBodyDetectionFeature>(new HasBody());
            }
        });
        var response = new HttpResponseMessage((HttpStatusCode)context.Response.StatusCode)
        {
            Content = new StreamContent(context.Response.Body),
        };
        if (context.Response.ContentType is { } contentType) response.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        foreach (var header in context.Response.Headers)
        {
            if (!response.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string?>)header.Value))
            {
                response.Content.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string?>)header.Value);
            }
        }
        return response;
    }

    private sealed class HasBody : Microsoft.AspNetCore.Http.Features.IHttpRequestBodyDetectionFeature
    {
        public bool CanHaveBody => true;
    }
}
