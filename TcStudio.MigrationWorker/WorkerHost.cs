using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.MigrationWorker.Backups;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Seeding;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.MigrationWorker;

/// <summary>
/// Builds the worker's host (service defaults, the system database), checks configuration, waits for the database,
/// runs one verb inside a trace span, and turns every failure into one line and an exit code.
/// </summary>
public static class WorkerHost
{
    public static readonly ActivitySource ActivitySource = new("TcStudio.MigrationWorker");

    /// <summary>The run without a verb: migrate, seed, migrate the workspace databases.</summary>
    public const string DefaultRunVerb = "migrate+seed";

    public static Task<int> RunAsync(string verb, Func<WorkerVerbs, CancellationToken, Task<int>> run,
        CancellationToken cancellationToken, bool needsDatabase = true) =>
        RunAsync<WorkerVerbs>(verb, run, cancellationToken, needsDatabase);

    /// <summary>Runs a verb of <typeparamref name="TVerbs"/> (WorkerVerbs, BackupVerbs), resolved in a scope of the host.</summary>
    public static async Task<int> RunAsync<TVerbs>(string verb, Func<TVerbs, CancellationToken, Task<int>> run,
        CancellationToken cancellationToken, bool needsDatabase = true) where TVerbs : notnull
    {
        // appsettings.json (log levels included) is read from beside the executable, wherever it is started from:
        // the default content root is the current directory, where `dotnet path/to/TcStudio.MigrationWorker.dll`
        // from the repository root would find none and print every EF command.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory });
        if (!needsDatabase && SystemDatabaseConnection.ReadConnectionString(builder.Configuration) is null)
        {
            // Verbs that never connect (script --idempotent) still build the model through a data source.
            builder.Configuration[SystemDatabaseConnection.ConnectionStringKey] = "Host=localhost;Database=tc_studio";
        }
        builder.Services.AddLogging(logging => logging.AddConsole(console =>
            // The default run (what the AppHost runs, its console shown in the dashboard, where stderr reads as errors):
            // normal output on stdout, warnings and errors on stderr. An explicit verb keeps stdout for its report
            // (and `script` for its SQL), so there every log line goes to stderr.
            console.LogToStandardErrorThreshold = verb == DefaultRunVerb ? LogLevel.Warning : LogLevel.Trace));
        builder.AddServiceDefaults();
        builder.AddTcStudioData();
        builder.AddWorkspaceDatabases();
        builder.Services.AddOpenTelemetry().WithTracing(tracing => tracing
            .AddSource(ActivitySource.Name)
            .AddSource(SystemDatabaseMigrator.ActivitySource.Name));
        builder.Services.AddScoped<WorkerVerbs>();
        builder.Services.AddScoped<WorkspaceVerbs>();
        builder.Services.AddScoped<Branches.BranchVerbs>();
        builder.AddBackups();

        using var host = builder.Build();
        var configuration = host.Services.GetRequiredService<IConfiguration>();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TcStudio.MigrationWorker");
        // Every bound options class (ValidateOnStart; the backup scheduler's too): one line naming the key, exit 2.
        if (TcStudio.SystemDatabase.Configuration.OptionsErrors.Validate(host.Services) is { } optionsError)
        {
            Console.Error.WriteLine(optionsError);
            return WorkerExitCodes.BadUsage;
        }
        TcStudio.SystemDatabase.Configuration.RenamedKeys.LogDeprecations(host.Services, logger);
        if (needsDatabase && SystemDatabaseConnection.FindConfigurationError(configuration) is { } configurationError)
        {
            Console.Error.WriteLine(configurationError);
            return WorkerExitCodes.BadUsage;
        }

        await host.StartAsync(cancellationToken);
        try
        {
            // The roles step connects with the admin string only: the owner it creates may be what
            // ConnectionStrings:tcstudio signs in as.
            if (verb == DefaultRunVerb && TcStudio.SystemDatabase.Security.SystemDatabaseRoles.FromConfiguration(configuration) is { } roles)
            {
                await WorkerVerbs.EnsureRolesAsync(roles, Console.Out, cancellationToken);
            }
            if (needsDatabase && verb != "roles")
            {
                await SystemDatabaseStartup.WaitUntilReachableAsync(configuration, logger, databaseMayBeMissing: true, cancellationToken,
                    progress: line => Console.Error.WriteLine($"{verb}: {line}"));
            }
            using var activity = ActivitySource.StartActivity(verb);
            await using var scope = host.Services.CreateAsyncScope();
            var exitCode = await run(scope.ServiceProvider.GetRequiredService<TVerbs>(), cancellationToken);
            activity?.SetTag("exit_code", exitCode);
            return exitCode;
        }
        catch (Branches.BranchException e)
        {
            Console.Error.WriteLine($"{verb}: {e.Message}");
            return WorkerExitCodes.Failed;
        }
        catch (Exception e) when (e is MigrationCommandException or SeedRefusedException)
        {
            Console.Error.WriteLine($"{verb}: {e.Message}");
            return WorkerExitCodes.BadUsage;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Console.Error.WriteLine($"{verb}: cancelled.");
            return WorkerExitCodes.Failed;
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "{Verb} failed", verb);
            Console.Error.WriteLine($"{verb} failed: {OneLine(e)}");
            return WorkerExitCodes.Failed;
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>The innermost useful message, on one line, without connection strings.</summary>
    public static string OneLine(Exception e)
    {
        var inner = e;
        while (inner.InnerException is not null && inner is not PostgresException) inner = inner.InnerException;
        var message = inner switch
        {
            DatabaseUnavailableException => inner.Message,
            PostgresException pg => $"PostgreSQL {pg.SqlState}: {pg.MessageText}",
            DbUpdateException => inner.Message,
            _ => inner.Message,
        };
        return message.ReplaceLineEndings(" ");
    }
}
