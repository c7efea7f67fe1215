using System.CommandLine;

namespace TcStudio.MigrationWorker.Branches;

/// <summary><c>branch create NAME [--from DATABASE]</c>, <c>branch list</c>, <c>branch delete NAME</c> (README, "Database branches").</summary>
public static class BranchCommandLine
{
    public static Command Create()
    {
        var branch = new Command("branch",
            "Throwaway copies of the system database or a workspace database, for trying a migration (not in Production).");

        var name = new Argument<string>("name") { Description = "The branch's database name: lower-case letters, digits, '_' or '-'." };
        var from = new Option<string?>("--from") { Description = "The database to copy (default: the system database)." };
        var create = new Command("create", "Copy a database into a new branch: CREATE DATABASE … TEMPLATE when nothing is connected to it, "
            + "else pg_dump | pg_restore (other sessions are never ended).") { name, from };
        create.SetAction((parse, ct) => WorkerHost.RunAsync<BranchVerbs>("branch create", (verbs, ct2) =>
            verbs.CreateAsync(parse.GetValue(name)!, parse.GetValue(from), ct2), ct));

        var list = new Command("list", "List the branches (name, source, when, size).");
        list.SetAction((_, ct) => WorkerHost.RunAsync<BranchVerbs>("branch list", (verbs, ct2) => verbs.ListAsync(ct2), ct));

        var deleteName = new Argument<string>("name") { Description = "The branch to drop (only a database branch create made)." };
        var delete = new Command("delete", "Drop a branch and the role made for it.") { deleteName };
        delete.SetAction((parse, ct) => WorkerHost.RunAsync<BranchVerbs>("branch delete", (verbs, ct2) =>
            verbs.DeleteAsync(parse.GetValue(deleteName)!, ct2), ct));

        branch.Subcommands.Add(create);
        branch.Subcommands.Add(list);
        branch.Subcommands.Add(delete);
        return branch;
    }
}
