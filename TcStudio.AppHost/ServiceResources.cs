using Aspire.Hosting.ApplicationModel;

namespace TcStudio.AppHost;

public static class ServiceResources
{
    /// <summary>
    /// The API's endpoints in the dashboard: the API itself, its Scalar reference and its OpenAPI document, for every
    /// http(s) endpoint it has.
    /// </summary>
    public static IResourceBuilder<ProjectResource> WithApiReferenceUrls(this IResourceBuilder<ProjectResource> api) =>
        api.WithUrls(context =>
        {
            foreach (var url in context.Urls.Where(u => u.Endpoint is not null).ToList())
            {
                var scheme = url.Endpoint!.EndpointName;
                url.DisplayText = $"API ({scheme})";
                context.Urls.Add(new ResourceUrlAnnotation
                {
                    Url = $"{url.Url.TrimEnd('/')}/scalar", DisplayText = $"Scalar API reference ({scheme})", Endpoint = url.Endpoint,
                });
                context.Urls.Add(new ResourceUrlAnnotation
                {
                    Url = $"{url.Url.TrimEnd('/')}/openapi/v1.json", DisplayText = $"OpenAPI document ({scheme})", Endpoint = url.Endpoint,
                });
            }
        });

    /// <summary>
    /// A project without a launch profile of its own (the worker) gets no environment name from Aspire, which would
    /// make it Production; in run mode it runs in the AppHost's environment, like the API under its launch profile.
    /// </summary>
    public static IResourceBuilder<ProjectResource> WithRunEnvironment(
        this IResourceBuilder<ProjectResource> project, IDistributedApplicationBuilder builder) =>
        builder.ExecutionContext.IsRunMode
            ? project.WithEnvironment("DOTNET_ENVIRONMENT", builder.Environment.EnvironmentName)
            : project;
}
