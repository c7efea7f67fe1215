using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.SystemDatabase.Configuration;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Reads and checks the system database's connection settings. This is the one place where configuration
/// becomes an Npgsql connection string, so every process connects the same way.
/// </summary>
public static class SystemDatabaseConnection
{
    /// <summary>The Aspire resource name: <c>ConnectionStrings:tcstudio</c> / <c>ConnectionStrings__tcstudio</c>.</summary>
    public const string ConnectionName = "tcstudio";

    public const string ConnectionStringKey = "ConnectionStrings:" + ConnectionName;

    /// <summary>Where an Aspire client integration would look, honoured so an Aspire user's configuration works.</summary>
    public const string AspireSettingsSection = "Aspire:Npgsql:EntityFrameworkCore:PostgreSQL";

    public const string ExampleConnectionString =
        "Host=localhost;Port=5432;Database=tc_studio;Username=tcstudio;Password=<secret>";

    private static readonly string[] SupportedProviders = ["postgres", "postgresql"];

    /// <summary>
    /// Returns one line saying what is wrong with the configuration, or null when it can be used.
    /// The line names keys and never echoes a value (a connection string may hold a password).
    /// </summary>
    public static string? FindConfigurationError(IConfiguration configuration)
    {
        var provider = ReadProvider(configuration);
        if (!SupportedProviders.Contains(provider, StringComparer.OrdinalIgnoreCase))
        {
            return $"Database provider '{provider}' (from DB_TYPE or Database:Provider) is not supported: "
                + "the system database runs on PostgreSQL only; set DB_TYPE=postgres or leave it unset.";
        }

        var connectionString = ReadConnectionString(configuration);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            return $"Connection string '{ConnectionStringKey}' is not set (environment variable "
                + $"ConnectionStrings__{ConnectionName}). Example: {ExampleConnectionString}";
        }

        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            return $"Connection string '{ConnectionStringKey}' is malformed ({DescribeMalformed(connectionString, e)}). "
                + $"Example: {ExampleConnectionString}";
        }

        if (string.IsNullOrWhiteSpace(builder.Host))
        {
            return $"Connection string '{ConnectionStringKey}' has no Host. Example: {ExampleConnectionString}";
        }

        try
        {
            // Bound, renamed keys applied and validated as DatabaseOptionsValidation does for the host's options.
            ReadOptions(configuration);
            // Opens the SSH tunnel when Database:Ssh names one: a wrong key or host key is this one line at start.
            Build(configuration, "validation");
        }
        catch (Ssh.SshTunnelException e)
        {
            return e.Message;
        }
        catch (Exception e) when (OptionsErrors.Describe(e) is { } line)
        {
            return line;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            // Our own messages (MinPoolSize above MaxPoolSize, an SSH setting): the binder's, which quote values, are above.
            return $"Section '{DatabaseOptions.SectionName}' holds an invalid value: {e.Message}";
        }
        return null;
    }

    public static string ReadProvider(IConfiguration configuration) =>
        configuration["DB_TYPE"] is { Length: > 0 } dbType ? dbType
        : configuration[$"{DatabaseOptions.SectionName}:Provider"] is { Length: > 0 } provider ? provider
        : "postgres";

    public static string? ReadConnectionString(IConfiguration configuration) =>
        configuration.GetConnectionString(ConnectionName) is { Length: > 0 } connectionString
            ? connectionString
            : configuration[$"{AspireSettingsSection}:ConnectionString"];

    /// <summary>
    /// The connection string with the <c>Database</c> section applied: explicit settings win; defaults only fill
    /// in what the connection string leaves unset. When <c>Database:Ssh:Host</c> is set, Host and Port point at the
    /// SSH tunnel's local end (opened here on first use; <see cref="Ssh.SshTunnelException"/> with one line if it
    /// cannot be), so every pool and tool of the process goes through the one tunnel.
    /// </summary>
    public static NpgsqlConnectionStringBuilder Build(IConfiguration configuration, string applicationName) =>
        Ssh.SshTunnels.Shared.Route(BuildDirect(configuration, applicationName),
            configuration.GetSection($"{DatabaseOptions.SectionName}:{Ssh.SshTunnelOptions.SectionName}"),
            Ssh.SshTunnels.SystemServerName, open: true);

    /// <summary>As <see cref="Build"/>, but addressed to the database itself, never through a tunnel (identities).</summary>
    public static NpgsqlConnectionStringBuilder BuildDirect(IConfiguration configuration, string applicationName)
    {
        var connectionString = ReadConnectionString(configuration)
            ?? throw new InvalidOperationException(
                $"Connection string '{ConnectionStringKey}' is not set. Example: {ExampleConnectionString}");
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        // Keys (canonical names) lists what the connection string sets; ContainsKey would say yes to any valid keyword.
        var explicitlySet = builder.Keys.Cast<string>().ToHashSet(StringComparer.OrdinalIgnoreCase);
        var section = configuration.GetSection(DatabaseOptions.SectionName);
        var options = ReadOptions(configuration);

        void Apply(string key, string connectionStringKeyword, Action set)
        {
            var setHere = section[key] is not null
                || DatabaseOptions.RenamedKeys.Any(renamed => renamed.NewName == key && section[renamed.OldName] is not null);
            if (setHere || !explicitlySet.Contains(connectionStringKeyword)) set();
        }

        Apply(nameof(DatabaseOptions.MinPoolSize), "Minimum Pool Size", () => builder.MinPoolSize = options.MinPoolSize);
        Apply(nameof(DatabaseOptions.MaxPoolSize), "Maximum Pool Size", () => builder.MaxPoolSize = options.MaxPoolSize);
        // Npgsql counts these in whole seconds: a fraction rounds up, so "00:00:00.5" is 1 s, not 0 (which means no limit).
        Apply(nameof(DatabaseOptions.IdleLifetime), "Connection Idle Lifetime",
            () => builder.ConnectionIdleLifetime = WholeSeconds(options.IdleLifetime));
        Apply(nameof(DatabaseOptions.ConnectTimeout), "Timeout", () => builder.Timeout = WholeSeconds(options.ConnectTimeout));
        Apply(nameof(DatabaseOptions.CommandTimeout), "Command Timeout",
            () => builder.CommandTimeout = WholeSeconds(options.CommandTimeout));
        Apply(nameof(DatabaseOptions.SslMode), "SSL Mode",
            () => builder.SslMode = Enum.Parse<SslMode>(options.SslMode, ignoreCase: true));

        if (builder.MinPoolSize > builder.MaxPoolSize)
        {
            throw new ArgumentException(
                $"Database:MinPoolSize ({builder.MinPoolSize}) is larger than Database:MaxPoolSize ({builder.MaxPoolSize}).");
        }

        // Hot queries are prepared server-side after two uses: the cheapest speed-up there is.
        if (!explicitlySet.Contains("Max Auto Prepare")) builder.MaxAutoPrepare = 64;
        if (!explicitlySet.Contains("Application Name")) builder.ApplicationName = applicationName;
        return builder;
    }

    public static int WholeSeconds(TimeSpan duration) => (int)Math.Ceiling(duration.TotalSeconds);

    /// <summary>
    /// The <c>Database</c> section as the host's <c>IOptions&lt;DatabaseOptions&gt;</c> has it (the same binding, renamed
    /// keys and validation), for what runs before the host is built. A bad value throws (an
    /// <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> or the binder's InvalidOperationException):
    /// <see cref="OptionsErrors.Describe"/> makes it one line naming the key.
    /// </summary>
    public static DatabaseOptions ReadOptions(IConfiguration configuration)
    {
        var options = new DatabaseOptions();
        configuration.GetSection(DatabaseOptions.SectionName).Bind(options);
        Complete(options, configuration);
        return options.Checked(DatabaseOptionsValidation.FindError);
    }

    /// <summary>What binding alone does not do: the renamed keys and DB_TYPE.</summary>
    internal static void Complete(DatabaseOptions options, IConfiguration configuration)
    {
        RenamedKey.ApplyAll(options, configuration, DatabaseOptions.RenamedKeys);
        options.Provider = ReadProvider(configuration);
    }

    /// <summary>host:port/database as user, for logs. Never the password.</summary>
    public static string Describe(NpgsqlConnectionStringBuilder builder) => DatabaseTelemetry.NpgsqlDataSources.DescribeSettings(builder);

    /// <summary>
    /// Which keyword is wrong and why, never a value (it may be a password): an unknown keyword, a keyword whose
    /// value is not of its type (Port=abc), or text that is not Keyword=value (often a ';' inside an unquoted value).
    /// </summary>
    public static string DescribeMalformed(string connectionString, Exception error)
    {
        var generic = new System.Data.Common.DbConnectionStringBuilder();
        try
        {
            generic.ConnectionString = connectionString;
        }
        catch (ArgumentException)
        {
            var previous = LastKeywordBefore(connectionString, FirstUnreadableIndex(connectionString));
            return previous is null
                ? "it does not start with Keyword=value"
                : $"the text after keyword '{AsWritten(connectionString, previous)}' is not Keyword=value; quote a value that contains ';' "
                    + "or '=' with double quotes";
        }
        foreach (string keyword in generic.Keys)
        {
            try
            {
                _ = new NpgsqlConnectionStringBuilder { [keyword] = generic[keyword] };
            }
            catch (ArgumentException) when (!IsKnownKeyword(keyword))
            {
                return $"keyword '{AsWritten(connectionString, keyword)}' is not supported by Npgsql";
            }
            catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException or OverflowException)
            {
                return $"the value of keyword '{AsWritten(connectionString, keyword)}' is not valid for it ({ExpectedForm(keyword)})";
            }
        }
        return error.Message.StartsWith("Keyword not supported", StringComparison.Ordinal) ? error.Message : "a value could not be read";
    }

    /// <summary>The keyword as the user wrote it (the generic parser lower-cases keys).</summary>
    private static string AsWritten(string connectionString, string keyword) =>
        System.Text.RegularExpressions.Regex.Matches(connectionString, @"(?:^|;)\s*(?<keyword>[^=;]+?)\s*=")
            .Select(m => m.Groups["keyword"].Value)
            .FirstOrDefault(k => k.Equals(keyword, StringComparison.OrdinalIgnoreCase)) ?? keyword;

    private static bool IsKnownKeyword(string keyword) => new NpgsqlConnectionStringBuilder().ContainsKey(keyword);

    private static string ExpectedForm(string keyword)
    {
        var property = typeof(NpgsqlConnectionStringBuilder).GetProperties().FirstOrDefault(p =>
            p.Name.Equals(keyword.Replace(" ", ""), StringComparison.OrdinalIgnoreCase));
        var type = Nullable.GetUnderlyingType(property?.PropertyType ?? typeof(string)) ?? property?.PropertyType;
        return type switch
        {
            { } t when t == typeof(int) => "a whole number is expected",
            { } t when t == typeof(bool) => "true or false is expected",
            { IsEnum: true } t => $"one of {string.Join(", ", Enum.GetNames(t))} is expected",
            _ => "see the Npgsql connection string reference",
        };
    }

    /// <summary>Where the generic parser gives up: the shortest prefix of Keyword=value pairs that still parses.</summary>
    private static int FirstUnreadableIndex(string connectionString)
    {
        var end = 0;
        foreach (var index in Enumerable.Range(1, connectionString.Length).Where(i => i == connectionString.Length || connectionString[i] == ';'))
        {
            try
            {
                _ = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString[..index] };
                end = index;
            }
            catch (ArgumentException)
            {
                break;
            }
        }
        return end;
    }

    private static string? LastKeywordBefore(string connectionString, int index)
    {
        if (index <= 0) return null;
        var generic = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString[..index] };
        return generic.Keys.Cast<string>().LastOrDefault();
    }
}
