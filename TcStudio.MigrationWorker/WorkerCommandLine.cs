using System.CommandLine;
using TcStudio.SystemDatabase;

namespace TcStudio.MigrationWorker;

/// <summary>
/// The worker's command line. Exit codes: 0 done, 1 failed (one line why), 2 bad usage or configuration.
/// Every verb that changes the schema or seeds holds <see cref="MigrationLock"/>.
/// </summary>
public static class WorkerCommandLine
{
    public static RootCommand Create()
    {
        var root = new RootCommand(RootDescription);
        root.SetAction((_, ct) => WorkerHost.RunAsync(WorkerHost.DefaultRunVerb, async (verbs, ct2) =>
            await verbs.MigrateAndSeedAsync(ct2), ct));

        var migrateTo = new Option<string?>("--to") { Description = "Apply pending migrations up to and including this one." };
        var migrate = new Command("migrate", "Apply pending migrations in order.") { migrateTo };
        migrate.SetAction((parse, ct) => WorkerHost.RunAsync("migrate", (verbs, ct2) =>
            verbs.MigrateAsync(parse.GetValue(migrateTo), ct2), ct));

        var revertTo = new Option<string?>("--to")
        {
            Description = "Revert until this migration is the last applied one; 0 reverts all.",
        };
        var revert = new Command("revert", "Revert the last applied migration (or down to --to).") { revertTo };
        revert.SetAction((parse, ct) => WorkerHost.RunAsync("revert", (verbs, ct2) =>
            verbs.RevertAsync(parse.GetValue(revertTo), ct2), ct));

        var status = new Command("status", "List every migration as applied or pending.");
        status.SetAction((_, ct) => WorkerHost.RunAsync("status", (verbs, ct2) => verbs.StatusAsync(ct2), ct));

        var seed = new Command("seed", "Seed roles, users and the TWSBP workspace; creates only what is missing.");
        seed.SetAction((_, ct) => WorkerHost.RunAsync("seed", (verbs, ct2) => verbs.SeedAsync(ct2), ct));

        var force = new Option<bool>("--force") { Description = "Allow reset in the Production environment." };
        var reset = new Command("reset", "Drop everything, re-apply all migrations and seed (development).") { force };
        reset.SetAction((parse, ct) => WorkerHost.RunAsync("reset", (verbs, ct2) =>
            verbs.ResetAsync(parse.GetValue(force), ct2), ct));

        var idempotent = new Option<bool>("--idempotent")
        {
            Description = "The whole history as a script that runs on a database in any state (needs no database).",
        };
        var script = new Command("script", "Print the SQL that migrate would run.") { idempotent };
        script.SetAction((parse, ct) => WorkerHost.RunAsync("script", (verbs, ct2) =>
            verbs.ScriptAsync(parse.GetValue(idempotent), ct2), ct, needsDatabase: !parse.GetValue(idempotent)));

        var roles = new Command("roles", "With ConnectionStrings:postgres (the server's admin): create or check the system database's "
            + "roles (owner, app, backup, definer; names under SystemRoles) and put its privileges in order. Idempotent.");
        roles.SetAction((_, ct) => WorkerHost.RunAsync("roles", (verbs, ct2) => verbs.RolesAsync(ct2), ct));

        var partitions = new Command("partitions", "Create the activity log's monthly partitions ahead (Activities:MonthsAhead, default 2) "
            + "and detach and drop those older than Activities:RetentionMonths (default: keep all), after a pg_dump of each into "
            + "Activities:BackupDirectory when set. Also part of the default run.");
        partitions.SetAction((_, ct) => WorkerHost.RunAsync("activities partitions", (verbs, ct2) => verbs.ActivityPartitionsAsync(ct2), ct));
        var activities = new Command("activities", "The activity log.") { partitions };

        root.Subcommands.Add(roles);
        root.Subcommands.Add(activities);
        root.Subcommands.Add(CreateWorkspacesCommand());
        root.Subcommands.Add(migrate);
        root.Subcommands.Add(revert);
        root.Subcommands.Add(status);
        root.Subcommands.Add(seed);
        root.Subcommands.Add(reset);
        root.Subcommands.Add(script);
        foreach (var command in BackupCommandLine.Create()) root.Subcommands.Add(command);
        root.Subcommands.Add(Branches.BranchCommandLine.Create());
        return root;
    }

    /// <summary>
    /// workspaces migrate|status|revert [--workspace &lt;slug&gt;] [--env &lt;name&gt;]: the workspace databases' base schema;
    /// workspaces bootstrap [--server &lt;name&gt;] [--create-provisioner]: the servers' provisioning functions and deploy login.
    /// </summary>
    private static Command CreateWorkspacesCommand()
    {
        var workspaces = new Command("workspaces", "The workspace databases' base schema, over every environment (or those selected).");
        foreach (var (verb, description) in new[]
                 {
                     ("migrate", "Apply pending base-schema migrations to each environment's database (creating a seeded one's database)."),
                     ("status", "Show each environment's base-schema version and what is pending."),
                     ("revert", "Revert each environment's last base-schema migration (or down to --to)."),
                 })
        {
            var workspace = new Option<string?>("--workspace") { Description = "Only this workspace (slug)." };
            var environment = new Option<string?>("--env") { Description = "Only environments with this name." };
            var to = new Option<int?>("--to")
            {
                Description = "revert: the version to go back to (0: everything).",
                CustomParser = result => ParseVersion(result, "--to"),
            };
            var command = new Command(verb, description) { workspace, environment };
            if (verb == "revert") command.Options.Add(to);
            command.SetAction((parse, ct) => WorkerHost.RunAsync($"workspaces {verb}", (verbs, ct2) =>
                verbs.WorkspacesAsync(verb, parse.GetValue(workspace), parse.GetValue(environment), parse.GetValue(to), ct2), ct));
            workspaces.Subcommands.Add(command);
        }

        var server = new Option<string?>("--server") { Description = "Only this server (default: every server with an admin connection string)." };
        var createProvisioner = new Option<bool>("--create-provisioner")
        {
            Description = "Create the deploy login if missing (LOGIN CREATEDB, nothing else) and set its password from the deploy connection string.",
        };
        var bootstrap = new Command("bootstrap", "With a server's admin connection string: install the functions that create workspace roles "
            + "(so the deploy login needs no CREATEROLE) and create or check the deploy login.") { server, createProvisioner };
        bootstrap.SetAction((parse, ct) => WorkerHost.RunAsync("workspaces bootstrap", (verbs, ct2) =>
            verbs.BootstrapAsync(parse.GetValue(server), parse.GetValue(createProvisioner), ct2), ct));
        workspaces.Subcommands.Add(bootstrap);
        return workspaces;
    }

    /// <summary>
    /// The root help: what the worker does, the configuration every verb reads (named, so a newcomer knows what to set)
    /// and the exit codes scripts can rely on.
    /// </summary>
    public const string RootDescription = """
        TC Studio migration worker: applies, reverts and reports the system database's migrations and seeds it.
        With no verb: the system database's roles (with an admin connection string), migrate, seed, the activity log's
        monthly partitions (as 'activities partitions'), bootstrap the workspace servers that have an admin connection
        string, then migrate every workspace environment (what the Aspire AppHost runs before the API).

        Configuration (appsettings.json or environment variables, where __ stands for :):
          ConnectionStrings:tcstudio   every verb but 'script --idempotent' and 'restore --pitr|stop': the system
                                       database, e.g. Host=localhost;Port=5432;Database=tc_studio;Username=tcstudio;Password=...
                                       (environment variable ConnectionStrings__tcstudio)
          Workspaces:SecretKey         no verb, 'workspaces migrate|status|revert': the key (base64, 32 bytes) that
                                       encrypts the workspace roles' passwords; the API must use the same one
          Seed:AdminPassword, Seed:UserPassword
                                       no verb, 'seed', 'reset': the seeded users' passwords (Development has defaults)
          ConnectionStrings:postgres or WorkspaceServers:<name>:AdminConnectionString
                                       no verb, 'roles', 'workspaces bootstrap': the server's admin credential (optional
                                       for the default run; 'roles' needs ConnectionStrings:postgres)
          SystemRoles:AppPassword, SystemRoles:BackupPassword, SystemRoles:OwnerPassword
                                       'roles': passwords of the system database's roles (see docs/security.md)
          Backup:Directory, Backup:WalArchive
                                       'backup', 'restore': where backups and archived WAL are kept
          Activities:RetentionMonths, Activities:MonthsAhead, Activities:BackupDirectory
                                       no verb, 'activities partitions': months of activity kept (default all),
                                       partitions made ahead (default 2), where dropped partitions are dumped first
          Database:StartupTimeout      how long to wait for PostgreSQL to answer (default 00:01:00)
          Database:Ssh:*, WorkspaceServers:<name>:Ssh:*
                                       reach a server through an SSH tunnel (Host, Port, User, PrivateKeyPath or
                                       PrivateKey, KnownHostsPath, TrustUnknownHost; see docs/operations.md)

        'branch create NAME [--from DATABASE]', 'branch list', 'branch delete NAME': throwaway copies of the system
        database or a workspace database on the same server, for trying a migration (refused in Production).

        Exit codes: 0 done; 1 failed (one line says why); 2 bad usage or configuration (nothing was changed).
        """;

    /// <summary>A schema version: a whole number, 0 or more. Errors name the option and the expected form.</summary>
    private static int? ParseVersion(System.CommandLine.Parsing.ArgumentResult result, string option)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var version))
        {
            return version;
        }
        result.AddError($"{option} expects a schema version, a whole number of 0 or more (for example {option} 3; 0 reverts "
            + $"everything), not '{text}'.");
        return null;
    }

    /// <summary>Parses and runs; usage errors exit 2 (System.CommandLine's own default would be 1).</summary>
    public static async Task<int> RunAsync(this RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) Console.Error.WriteLine(error.Message);
            Console.Error.WriteLine("Run with --help for usage.");
            return WorkerExitCodes.BadUsage;
        }
        return await parse.InvokeAsync();
    }
}

public static class WorkerExitCodes
{
    public const int Done = 0;
    public const int Failed = 1;
    public const int BadUsage = 2;
}
