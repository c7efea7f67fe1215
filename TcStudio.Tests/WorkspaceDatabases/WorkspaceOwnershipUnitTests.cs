using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using Microsoft.SqlServer.TransactSql.ScriptDom;
using TcStudio.Tests.Infrastructure;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;
using TcStudio.WorkspaceDatabases.SqlServer;

namespace TcStudio.Tests.WorkspaceDatabases;

/// <summary>The pure parts of ownership: server identities, role names, SCRAM verifiers, the secret store, the marker's T-SQL.</summary>
public sealed class WorkspaceOwnershipUnitTests
{
    [Theory]
    [InlineData("Host=localhost;Username=u", "postgres://localhost:5432")]
    [InlineData("Host=127.0.0.1;Port=5432;Username=u", "postgres://localhost:5432")]
    [InlineData("Host=::1;Username=u", "postgres://localhost:5432")]
    [InlineData("Host=[::1]:5433;Username=u", "postgres://localhost:5433")]
    [InlineData("Host=/var/run/postgresql;Port=5433;Username=u", "postgres://localhost:5433")]
    [InlineData("Host=DB.Example.COM.;Port=6432;Database=x;Username=u", "postgres://db.example.com:6432")]
    [InlineData("Host=b.example:5433,a.example;Username=u", "postgres://a.example:5432,b.example:5433")]
    [InlineData("Host=a.example,b.example:5433,a.example:5432;Username=u", "postgres://a.example:5432,b.example:5433")]
    public void Postgres_servers_are_identified_by_normalised_host_and_port(string connectionString, string identity) =>
        Assert.Equal(identity, WorkspaceServerIdentity.Of("postgres", connectionString));

    [Theory]
    [InlineData("Server=localhost;User ID=sa;Password=x", "sqlserver://localhost:1433")]
    [InlineData("Server=tcp:127.0.0.1,1433;User ID=sa;Password=x", "sqlserver://localhost:1433")]
    [InlineData("Server=.;User ID=sa;Password=x", "sqlserver://localhost:1433")]
    [InlineData("Server=(local);User ID=sa;Password=x", "sqlserver://localhost:1433")]
    [InlineData("Data Source=SQL01.corp\\Reports;User ID=sa;Password=x", "sqlserver://sql01.corp\\reports")]
    [InlineData("Data Source=SQL01.corp\\Reports,14330;User ID=sa;Password=x", "sqlserver://sql01.corp:14330")]
    public void Sql_servers_are_identified_by_normalised_host_and_port_or_instance(string connectionString, string identity) =>
        Assert.Equal(identity, WorkspaceServerIdentity.Of("sqlserver", connectionString));

    [Fact]
    public void Two_names_for_one_server_are_one_identity_and_an_operator_may_set_it()
    {
        var registry = new WorkspaceServerRegistry(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = "Host=127.0.0.1;Port=5432;Database=tc_studio;Username=owner;Password=secret-1",
            ["WorkspaceServers:again:Provider"] = "postgres",
            ["WorkspaceServers:again:ConnectionString"] = "Host=localhost;Database=postgres;Username=someone;Password=secret-2",
            ["WorkspaceServers:alias:Provider"] = "postgres",
            ["WorkspaceServers:alias:ConnectionString"] = "Host=pg-alias.internal;Username=u;Password=secret-3",
            ["WorkspaceServers:alias:Identity"] = "Postgres://LOCALHOST:5432",
        }).Build());
        Assert.Equal("postgres://localhost:5432", registry.Find("local")!.Identity);
        Assert.Equal(registry.Find("local")!.Identity, registry.Find("again")!.Identity);
        Assert.Equal(registry.Find("local")!.Identity, registry.Find("alias")!.Identity);
        Assert.DoesNotContain("secret", registry.Find("local")!.Identity);
    }

    [Fact]
    public void Server_local_takes_its_own_deploy_credential_when_configured()
    {
        var registry = new WorkspaceServerRegistry(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:tcstudio"] = "Host=h;Database=tc_studio;Username=owner;Password=secret-1",
            ["WorkspaceServers:local:ConnectionString"] = "Host=h;Database=tc_studio;Username=tcstudio_provisioner;Password=secret-2",
        }).Build());
        var local = registry.Find("local")!;
        Assert.Equal(("postgres", "tcstudio_provisioner"),
            (local.Provider, new Npgsql.NpgsqlConnectionStringBuilder(local.ConnectionString).Username));
        Assert.Empty(registry.ConfigurationErrors);
    }

    [Fact]
    public void Roles_are_named_after_the_environment_id()
    {
        var id = Guid.Parse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        Assert.Equal("tcws_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b_owner", PostgresWorkspaceRoles.Owner(id));
        Assert.Equal("tcws_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b_exec", PostgresWorkspaceRoles.Execute(id));
        Assert.True(PostgresWorkspaceRoles.Owner(id).Length <= 63);
        // The earlier naming, by database name, is only read to convert old environments.
        Assert.Matches("^tcws_acme_dev_[0-9a-f]{6}_owner$", PostgresWorkspaceRoles.Legacy("Acme_Dev").Owner);
    }

    [Fact]
    public void A_scram_verifier_is_what_RFC_7677_derives_from_the_password()
    {
        // RFC 7677 section 3: user "user", password "pencil", this salt and 4096 iterations.
        var salt = Convert.FromBase64String("W22ZaJ0SNY7soEsUEjb6gQ==");
        var verifier = TcStudio.SystemDatabase.Security.ScramVerifier.Compute("pencil", salt);
        Assert.True(TcStudio.SystemDatabase.Security.ScramVerifier.IsVerifier(verifier), verifier);
        var (storedKey, serverKey) = (Convert.FromBase64String(verifier.Split('$')[2].Split(':')[0]),
            Convert.FromBase64String(verifier.Split(':')[2]));
        const string AuthMessage = "n=user,r=rOprNGfwEbeRWgbNEkqO,"
            + "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
            + "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        Assert.Equal("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            Convert.ToBase64String(HMACSHA256.HashData(serverKey, Encoding.UTF8.GetBytes(AuthMessage))));
        var clientSignature = HMACSHA256.HashData(storedKey, Encoding.UTF8.GetBytes(AuthMessage));
        var clientKey = Convert.FromBase64String("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").Zip(clientSignature,
            (a, b) => (byte)(a ^ b)).ToArray();
        Assert.Equal(storedKey, SHA256.HashData(clientKey));
        Assert.DoesNotContain("pencil", verifier);
        Assert.NotEqual(verifier, TcStudio.SystemDatabase.Security.ScramVerifier.Compute("pencil")); // a fresh salt each time
    }

    private static WorkspaceSecrets Secrets(string? key, string environment = "Production", string? contentRoot = null) =>
        new(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [WorkspaceSecrets.KeyName] = key }).Build(),
            new Environment(environment, contentRoot ?? Path.GetTempPath()));

    [Fact]
    public void Secrets_round_trip_only_with_their_key_and_purpose()
    {
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var secrets = Secrets(key);
        var password = WorkspaceSecrets.NewPassword();
        Assert.Equal(43, password.Length);
        var stored = secrets.Protect(password, "tcws_x_owner");
        Assert.DoesNotContain(password, Encoding.UTF8.GetString(stored));
        Assert.Equal(password, secrets.Unprotect(stored, "tcws_x_owner"));
        Assert.NotEqual(stored, secrets.Protect(password, "tcws_x_owner")); // a fresh nonce each time
        Assert.ThrowsAny<CryptographicException>(() => secrets.Unprotect(stored, "tcws_y_owner"));
        Assert.ThrowsAny<CryptographicException>(() => Secrets(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32))).Unprotect(stored,
            "tcws_x_owner"));
        stored[^1] ^= 1;
        Assert.ThrowsAny<CryptographicException>(() => secrets.Unprotect(stored, "tcws_x_owner"));
    }

    [Fact]
    public void The_secret_key_is_required_outside_Development_and_generated_once_in_it()
    {
        var configuration = (string? key) => new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string,
            string?> { [WorkspaceSecrets.KeyName] = key }).Build();
        var missing = WorkspaceSecrets.FindConfigurationError(configuration(null), new Environment("Production", "/"));
        Assert.Contains("Workspaces:SecretKey", missing);
        Assert.Contains("Workspaces__SecretKey", missing);
        Assert.Contains("malformed", WorkspaceSecrets.FindConfigurationError(configuration("c2hvcnQ="), new Environment("Production", "/")));
        Assert.Null(WorkspaceSecrets.FindConfigurationError(configuration(null), new Environment("Development", "/")));

        var root = Directory.CreateTempSubdirectory("tcstudio-secrets-").FullName;
        try
        {
            var first = Secrets(null, "Development", root).Protect("x", "p");
            Assert.True(File.Exists(Path.Combine(root, WorkspaceSecrets.DevelopmentKeyFile)));
            Assert.Equal("x", Secrets(null, "Development", root).Unprotect(first, "p")); // the same key on the next start
            // In the repository, the API and the worker (different content roots) share the key at the repository root.
            Assert.Equal(Path.Combine(RepositoryPaths.Root, WorkspaceSecrets.DevelopmentKeyFile),
                WorkspaceSecrets.DevelopmentKeyPath(Path.Combine(RepositoryPaths.Root, "TcStudio.Api")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void The_marker_is_written_with_parameters_in_a_schema_of_its_own()
    {
        var script = new TSql160Parser(initialQuotedIdentifiers: true).Parse(new StringReader(SqlServerSql.WriteMarker), out var errors);
        Assert.Empty(errors);
        var insert = Assert.Single(Collect<InsertStatement>(script));
        var values = Assert.Single(((ValuesInsertSource)insert.InsertSpecification.InsertSource).RowValues).ColumnValues;
        Assert.Equal(["@workspace_id", "@environment_id", "@database_id", "@server_identity"],
            values.Skip(1).Select(v => Assert.IsType<VariableReference>(v).Name));
        var targets = Collect<NamedTableReference>(script).Select(t =>
            $"{t.SchemaObject.SchemaIdentifier?.Value}.{t.SchemaObject.BaseIdentifier.Value}").Distinct();
        Assert.Equal(["tcstudio_ownership.marker"], targets);
        Assert.Contains("tcstudio_ownership.marker", SqlServerSql.ReadMarker);
    }

    private static List<T> Collect<T>(TSqlFragment fragment) where T : TSqlFragment
    {
        var visitor = new Collector<T>();
        fragment.Accept(visitor);
        return visitor.Found;
    }

    private sealed class Collector<T> : TSqlFragmentVisitor where T : TSqlFragment
    {
        public List<T> Found { get; } = [];

        public override void Visit(TSqlFragment fragment)
        {
            if (fragment is T match) Found.Add(match);
        }
    }

    private sealed class Environment(string name, string contentRoot) : IHostEnvironment
    {
        public string EnvironmentName { get; set; } = name;
        public string ApplicationName { get; set; } = "tests";
        public string ContentRootPath { get; set; } = contentRoot;
        public IFileProvider ContentRootFileProvider { get; set; } = new NullFileProvider();
    }
}
