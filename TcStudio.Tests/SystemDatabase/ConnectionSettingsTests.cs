using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.SystemDatabase;

namespace TcStudio.Tests.SystemDatabase;

/// <summary>How configuration becomes the Npgsql connection string (SystemDatabaseConnection.Build), in one place.</summary>
public sealed class ConnectionSettingsTests
{
    private static NpgsqlConnectionStringBuilder Build(string connectionString, params (string Key, string Value)[] settings)
    {
        var values = new Dictionary<string, string?> { ["ConnectionStrings:tcstudio"] = connectionString };
        foreach (var (key, value) in settings) values[key] = value;
        return SystemDatabaseConnection.Build(new ConfigurationBuilder().AddInMemoryCollection(values).Build(), "tests");
    }

    [Fact]
    public void Defaults_fill_in_what_the_connection_string_leaves_unset()
    {
        var built = Build("Host=db;Database=tc_studio;Username=u;Password=p");

        Assert.Equal((2, 10, 30, 2, 30), (built.MinPoolSize, built.MaxPoolSize, built.ConnectionIdleLifetime, built.Timeout, built.CommandTimeout));
        Assert.Equal(SslMode.Prefer, built.SslMode);
        Assert.Equal(64, built.MaxAutoPrepare);
        Assert.Equal("tests", built.ApplicationName);
    }

    [Fact]
    public void The_connection_string_keeps_what_it_sets_unless_configuration_says_otherwise()
    {
        var fromConnectionString = Build("Host=db;Database=d;Maximum Pool Size=25;Timeout=7;Application Name=mine;Max Auto Prepare=0");
        Assert.Equal((25, 7, "mine", 0), (fromConnectionString.MaxPoolSize, fromConnectionString.Timeout,
            fromConnectionString.ApplicationName, fromConnectionString.MaxAutoPrepare));

        var configured = Build("Host=db;Database=d;MaxPoolSize=25", ("Database:MaxPoolSize", "50"), ("Database:SslMode", "Require"));
        Assert.Equal(50, configured.MaxPoolSize);
        Assert.Equal(SslMode.Require, configured.SslMode);
    }

    [Fact]
    public void A_minimum_above_the_maximum_is_a_configuration_error_naming_both_keys()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = "Host=db;Database=d",
            ["Database:MinPoolSize"] = "20",
        }).Build();

        var error = SystemDatabaseConnection.FindConfigurationError(configuration);

        Assert.NotNull(error);
        Assert.Contains("Database:MinPoolSize", error);
        Assert.Contains("Database:MaxPoolSize", error);
    }
}
