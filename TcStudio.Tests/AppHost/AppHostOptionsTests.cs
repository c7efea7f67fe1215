using Microsoft.Extensions.Configuration;
using Npgsql;
using TcStudio.AppHost;

namespace TcStudio.Tests.AppHost;

public sealed class AppHostOptionsTests
{
    private const string Repository = "/home/dev/src/tc-studio";

    [Fact]
    public void Without_configuration_the_api_listens_on_5180_and_the_cluster_lives_in_the_repository()
    {
        var options = Load(runningAsRoot: false);

        Assert.Equal(new Uri("http://localhost:5180"), options.ApiUrl);
        Assert.Equal("/home/dev/src/tc-studio/.tcstudio/postgres", options.PostgresStateDirectory);
        Assert.Null(options.ExistingServer);
        Assert.Equal(0, options.PostgresPort);
        Assert.Equal("tc_studio", options.DatabaseName);
        Assert.Empty(options.SeedPasswords);
    }

    [Fact]
    public void As_root_the_cluster_lives_under_var_lib_one_folder_per_repository_path()
    {
        var options = Load(runningAsRoot: true);
        var otherClone = AppHostOptions.DefaultStateDirectory("/home/dev/src/tc-studio-2", runningAsRoot: true);

        Assert.Matches("^/var/lib/tcstudio/[0-9a-f]{12}$", options.PostgresStateDirectory);
        Assert.Equal(options.PostgresStateDirectory, AppHostOptions.DefaultStateDirectory(Repository + "/", runningAsRoot: true));
        Assert.NotEqual(options.PostgresStateDirectory, otherClone);
    }

    [Fact]
    public void Configuration_overrides_the_state_directory_port_and_api_url()
    {
        var options = Load(runningAsRoot: true, ("AppHost:PostgresStateDirectory", "/tmp/apphost-state"),
            ("AppHost:PostgresPort", "55440"), ("AppHost:ApiUrl", "http://+:5200"));

        Assert.Equal("/tmp/apphost-state", options.PostgresStateDirectory);
        Assert.Equal(55440, options.PostgresPort);
        Assert.Equal("http://+:5200", options.ApiUrls); // what Kestrel gets
        Assert.Equal(new Uri("http://localhost:5200"), options.ApiUrl); // what is probed and printed
    }

    [Fact]
    public void The_services_connect_to_the_system_database_with_the_existing_servers_credentials()
    {
        var options = Load(runningAsRoot: false,
            ("ConnectionStrings:postgres", "Host=db.internal;Port=5433;Username=owner;Password=s3cret;Database=postgres"));

        var services = new NpgsqlConnectionStringBuilder(options.SystemDatabaseConnectionString(options.ExistingServer!));
        Assert.Equal(("db.internal", 5433, "owner", "s3cret", "tc_studio"),
            (services.Host, services.Port, services.Username, services.Password, services.Database));
    }

    [Theory]
    [InlineData("ConnectionStrings:postgres", "Host=db;Password=s3cret;Colour=blue", "ConnectionStrings:postgres")]
    [InlineData("ConnectionStrings:postgres", "Password=s3cret;Port=5432", "has no Host")]
    [InlineData("ConnectionStrings:postgres", "Host=db;Password=s3cret;Port=not-a-port", "ConnectionStrings:postgres")]
    [InlineData("AppHost:ApiUrl", "localhost:5180", "AppHost:ApiUrl")]
    [InlineData("AppHost:PostgresPort", "70000", "AppHost:PostgresPort")]
    [InlineData("AppHost:StopTimeout", "soon", "AppHost:StopTimeout")]
    public void Bad_configuration_is_one_line_naming_the_key_and_never_the_value(string key, string value, string expected)
    {
        var error = Assert.Throws<AppHostConfigurationException>(() => Load(runningAsRoot: false, (key, value)));

        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain("s3cret", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Seed_passwords_set_for_the_apphost_are_forwarded_to_the_worker()
    {
        var options = Load(runningAsRoot: false, ("Seed:AdminPassword", "configured-admin-password"));

        Assert.Equal(["Seed:AdminPassword"], options.SeedPasswords.Keys);
    }

    private static AppHostOptions Load(bool runningAsRoot, params (string Key, string Value)[] settings)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value)))
            .Build();
        return AppHostOptions.FromConfiguration(configuration, "Development", Repository, runningAsRoot);
    }
}
