using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.AppHost.LocalPostgres;

namespace TcStudio.AppHost;

/// <summary>
/// What the AppHost runs and where, read once at start from (later wins) appsettings.json,
/// appsettings.{Environment}.json, user secrets (Development), environment variables and the command line.
/// </summary>
public sealed record AppHostOptions
{
    /// <summary>Aspire's resource names: the server, and the system database the services use.</summary>
    public const string PostgresConnectionKey = "ConnectionStrings:postgres";
    public const string SqlConnectionKey = "ConnectionStrings:sql";
    public const string Section = "AppHost";
    public const string DefaultApiUrl = "http://localhost:5180";
    public const string DefaultDatabaseName = "tc_studio";
    public const string OtlpEndpointKey = "OTEL_EXPORTER_OTLP_ENDPOINT";
    public static readonly string[] SeedPasswordKeys = ["Seed:AdminPassword", "Seed:UserPassword"];

    private const string ExamplePostgresConnectionString = "Host=localhost;Port=5432;Username=postgres;Password=<secret>";

    /// <summary>The AppHost's environment, handed to the services. Development unless DOTNET_ENVIRONMENT says otherwise.</summary>
    public required string EnvironmentName { get; init; }

    /// <summary>An existing server (superuser or database owner); null runs the private local cluster.</summary>
    public NpgsqlConnectionStringBuilder? ExistingServer { get; init; }

    /// <summary>Passed through to the services as <c>ConnectionStrings__sql</c> when set.</summary>
    public string? SqlConnectionString { get; init; }

    public string DatabaseName { get; init; } = DefaultDatabaseName;

    /// <summary>The private cluster's home (data/, postgres.log, superuser.password). Kept between runs.</summary>
    public required string PostgresStateDirectory { get; init; }

    /// <summary>The private cluster's port; 0 takes a free one at each start.</summary>
    public int PostgresPort { get; init; }

    /// <summary>The API's ASPNETCORE_URLS.</summary>
    public string ApiUrls { get; init; } = DefaultApiUrl;

    /// <summary>How long the API gets to answer /health with 200.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>How long a service gets to stop after SIGTERM before it is killed.</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public string? OtlpEndpoint { get; init; }

    /// <summary>Seed passwords set in the AppHost's configuration, forwarded to the worker (never printed).</summary>
    public IReadOnlyDictionary<string, string> SeedPasswords { get; init; } = new Dictionary<string, string>();

    /// <summary>The URL users and the readiness probe use: the first of <see cref="ApiUrls"/>, wildcard hosts as localhost.</summary>
    public Uri ApiUrl => PublicUrl(ApiUrls);

    public static AppHostOptions Load(string[] args)
    {
        var environmentName = Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT") is { Length: > 0 } configured
            ? configured
            : "Development"; // a local-development tool: Development unless told otherwise
        var builder = new ConfigurationBuilder()
            .SetBasePath(AppContext.BaseDirectory)
            .AddJsonFile("appsettings.json", optional: true)
            .AddJsonFile($"appsettings.{environmentName}.json", optional: true);
        if (string.Equals(environmentName, "Development", StringComparison.OrdinalIgnoreCase))
        {
            builder.AddUserSecrets(typeof(AppHostOptions).Assembly, optional: true);
        }
        var configuration = builder.AddEnvironmentVariables().AddCommandLine(args).Build();
        return FromConfiguration(configuration, environmentName, ServiceProjects.RepositoryRootFromBuild(),
            LocalPostgresCluster.RunningAsRoot);
    }

    public static AppHostOptions FromConfiguration(
        IConfiguration configuration, string environmentName, string repositoryRoot, bool runningAsRoot)
    {
        var section = configuration.GetSection(Section);
        var options = new AppHostOptions
        {
            EnvironmentName = environmentName,
            ExistingServer = ReadExistingServer(configuration),
            SqlConnectionString = NullIfEmpty(configuration[SqlConnectionKey]),
            DatabaseName = NullIfEmpty(section["DatabaseName"]) ?? DefaultDatabaseName,
            PostgresStateDirectory = Path.GetFullPath(NullIfEmpty(section["PostgresStateDirectory"])
                ?? DefaultStateDirectory(repositoryRoot, runningAsRoot)),
            PostgresPort = ReadInt(section, "PostgresPort", 0, 0, 65535),
            ApiUrls = NullIfEmpty(section["ApiUrl"]) ?? DefaultApiUrl,
            StartTimeout = ReadTimeSpan(section, "StartTimeout", TimeSpan.FromMinutes(2)),
            StopTimeout = ReadTimeSpan(section, "StopTimeout", TimeSpan.FromSeconds(10)),
            OtlpEndpoint = NullIfEmpty(configuration[OtlpEndpointKey]),
            SeedPasswords = SeedPasswordKeys
                .Where(key => !string.IsNullOrEmpty(configuration[key]))
                .ToDictionary(key => key, key => configuration[key]!),
        };
        _ = PublicUrl(options.ApiUrls, $"{Section}:ApiUrl");
        return options;
    }

    /// <summary>
    /// Not root: <c>.tcstudio/postgres</c> in the repository (git-ignored). Root: PostgreSQL runs as the postgres
    /// user, who cannot reach a root-only home directory, so the cluster lives under /var/lib/tcstudio, one folder
    /// per repository path (a short hash of it), so two clones never share a cluster.
    /// </summary>
    public static string DefaultStateDirectory(string repositoryRoot, bool runningAsRoot)
    {
        if (!runningAsRoot) return Path.Combine(repositoryRoot, ".tcstudio", "postgres");
        var normalized = Path.TrimEndingDirectorySeparator(Path.GetFullPath(repositoryRoot));
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(normalized)))[..12].ToLowerInvariant();
        return Path.Combine("/var/lib/tcstudio", hash);
    }

    /// <summary>The services' connection string: the server's credentials, the system database's name.</summary>
    public string SystemDatabaseConnectionString(NpgsqlConnectionStringBuilder server) =>
        new NpgsqlConnectionStringBuilder(server.ConnectionString) { Database = DatabaseName }.ConnectionString;

    private static NpgsqlConnectionStringBuilder? ReadExistingServer(IConfiguration configuration)
    {
        if (NullIfEmpty(configuration[PostgresConnectionKey]) is not { } connectionString) return null;
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            // The value may hold a password: say which key, never what it holds.
            var detail = e.Message.StartsWith("Keyword not supported", StringComparison.Ordinal)
                ? e.Message
                : "a value could not be read";
            throw new AppHostConfigurationException(
                $"Connection string '{PostgresConnectionKey}' is malformed ({detail}). Example: {ExamplePostgresConnectionString}");
        }
        if (string.IsNullOrWhiteSpace(builder.Host))
        {
            throw new AppHostConfigurationException(
                $"Connection string '{PostgresConnectionKey}' has no Host. Example: {ExamplePostgresConnectionString}");
        }
        return builder;
    }

    private static Uri PublicUrl(string urls, string key = "AppHost:ApiUrl")
    {
        var first = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "";
        // Kestrel's wildcard hosts are not addresses a browser or a probe can use.
        foreach (var wildcard in new[] { "://+:", "://*:", "://0.0.0.0:", "://[::]:" })
        {
            first = first.Replace(wildcard, "://localhost:", StringComparison.Ordinal);
        }
        if (!Uri.TryCreate(first, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            throw new AppHostConfigurationException(
                $"'{key}' must be an http(s) URL such as {DefaultApiUrl}.");
        }
        return url;
    }

    private static int ReadInt(IConfigurationSection section, string key, int fallback, int min, int max)
    {
        if (NullIfEmpty(section[key]) is not { } text) return fallback;
        return int.TryParse(text, out var value) && value >= min && value <= max
            ? value
            : throw new AppHostConfigurationException($"'{Section}:{key}' must be a whole number from {min} to {max}.");
    }

    private static TimeSpan ReadTimeSpan(IConfigurationSection section, string key, TimeSpan fallback)
    {
        if (NullIfEmpty(section[key]) is not { } text) return fallback;
        return TimeSpan.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var value) && value > TimeSpan.Zero
            ? value
            : throw new AppHostConfigurationException($"'{Section}:{key}' must be a positive duration (hh:mm:ss).");
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
}
