using System.Security.Cryptography;
using Npgsql;
using TcStudio.SystemDatabase.Security;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Security;

/// <summary>
/// The worker's `roles` verb and its default run with an admin connection string: the roles come first, then the
/// worker migrates and seeds as the owner (not a superuser), and the app role can read what was seeded.
/// </summary>
public sealed class SystemRolesVerbTests(EmptyDatabaseFixture database) : IClassFixture<EmptyDatabaseFixture>
{
    private readonly string _ownerPassword = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
    private readonly string _appPassword = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
    private SystemRoleNames Names => SystemRoleNames.For(database.DatabaseName);

    [Fact]
    public async Task The_default_run_creates_the_roles_then_migrates_and_seeds_as_the_owner()
    {
        var owner = new NpgsqlConnectionStringBuilder(database.ConnectionString) { Username = Names.Owner,
            Password = _ownerPassword }.ConnectionString;
        var environment = MigrationWorkerRunner.Environment(owner);
        environment["ConnectionStrings__postgres"] = database.Server.ConnectionString("postgres");
        environment["SystemRoles__AppPassword"] = _appPassword;

        var verbWithoutAdmin = await MigrationWorkerRunner.RunAsync(MigrationWorkerRunner.Environment(owner), "roles");
        Assert.True(verbWithoutAdmin.ExitCode == 2, verbWithoutAdmin.ToString());
        Assert.Contains("ConnectionStrings__postgres", verbWithoutAdmin.StandardError);

        var run = await MigrationWorkerRunner.RunAsync(environment);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains($"created role '{Names.Owner}'", run.StandardOutput);
        Assert.Contains("seed: created", run.StandardOutput);

        // Everything in the schema belongs to the owner; the app role reads the seeded users through its own login.
        Assert.Equal(0L, await database.ScalarAsync<long>("""
            SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND pg_get_userbyid(c.relowner) <> @owner
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
            """, ("owner", Names.Owner)));
        // pg_stat_statements (the insights) is there, made by the admin: the owner could not have created it.
        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"));
        await using (var app = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(database.ConnectionString)
                     {
                         Username = Names.App, Password = _appPassword, Pooling = false,
                     }.ConnectionString))
        {
            await app.OpenAsync();
            await using var users = new NpgsqlCommand("SELECT count(*) FROM users", app);
            Assert.True((long)(await users.ExecuteScalarAsync())! > 0);
        }

        // Idempotent: the verb on its own checks what is there.
        var again = await MigrationWorkerRunner.RunAsync(environment, "roles");
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains($"checked role '{Names.App}'", again.StandardOutput);
        Assert.Contains("roles: ", again.StandardOutput);
    }
}
