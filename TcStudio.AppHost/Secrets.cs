namespace TcStudio.AppHost;

/// <summary>
/// Secrets are parameters. In run mode a missing value is generated once and kept in the AppHost's user secrets
/// (<c>Parameters:&lt;name&gt;</c>), so it stays the same across runs and a developer can read it there or in the
/// dashboard; in publish mode it is a required secret input of the deployment (no value in the manifest).
/// </summary>
public static class Secrets
{
    /// <param name="generatedAtDeployment">
    /// A password only the application's own services use (a role's): generated at deployment too, rather than a
    /// required input.
    /// </param>
    public static IResourceBuilder<ParameterResource> AddSecret(
        this IDistributedApplicationBuilder builder, string name, string description, int minLength = 24, bool generatedAtDeployment = false)
    {
        var parameter = builder.ExecutionContext.IsPublishMode
            ? generatedAtDeployment
                ? builder.AddParameter(name, new GenerateParameterDefault { MinLength = minLength, Special = false }, secret: true)
                : builder.AddParameter(name, secret: true)
            : builder.AddParameter(name, new GenerateParameterDefault { MinLength = minLength, Special = false },
                secret: true, persist: true);
        return parameter.WithDescription(description);
    }
}
