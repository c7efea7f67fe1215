using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// What the API checks before it serves: configuration (a mistake stops it at once with one line and exit code 2)
/// and that the system database answers (retried with backoff up to Database:StartupTimeout, then exit 1).
/// </summary>
public static class StartupChecks
{
    public const int ConfigurationError = 2;
    public const int DatabaseUnavailable = 1;

    /// <returns>null when the API may start; otherwise the exit code to stop with.</returns>
    public static async Task<int?> RunStartupChecksAsync(this WebApplication app)
    {
        // Every bound options class first (ValidateOnStart): one line naming the key, never its value. The static
        // readers below share its validation, so a bad value is reported once, here.
        if (OptionsErrors.Validate(app.Services) is { } options)
        {
            Console.Error.WriteLine(options);
            return ConfigurationError;
        }
        RenamedKeys.LogDeprecations(app.Services, app.Logger);

        var errors = new List<string>();
        if (SystemDatabaseConnection.FindConfigurationError(app.Configuration) is { } database) errors.Add(database);
        if (Auth.SigningKeys.FindConfigurationError(app.Configuration, app.Environment) is { } auth) errors.Add(auth);
        if (TcStudio.WorkspaceDatabases.WorkspaceSecrets.FindConfigurationError(app.Configuration, app.Environment) is { } secrets)
        {
            errors.Add(secrets);
        }
        errors.AddRange(SecurityDefaults.FindConfigurationErrors(app.Configuration));
        if (errors.Count > 0)
        {
            foreach (var error in errors) Console.Error.WriteLine(error);
            return ConfigurationError;
        }

        try
        {
            await SystemDatabaseStartup.WaitUntilReachableAsync(app.Configuration, app.Logger, 
                databaseMayBeMissing: SystemDatabaseConnection.ReadOptions(app.Configuration).MigrateOnStartup,
                app.Lifetime.ApplicationStopping);
            return null;
        }
        catch (DatabaseUnavailableException e)
        {
            Console.Error.WriteLine(e.Message);
            return DatabaseUnavailable;
        }
    }
}
