using TcStudio.SystemDatabase;

namespace TcStudio.MigrationWorker.Branches;

/// <summary>
/// <c>branch create NAME [--from DATABASE]</c>, <c>branch list</c>, <c>branch delete NAME</c>: throwaway copies of
/// TC Studio's databases on the system database's server, for development. Refused in Production.
/// </summary>
public sealed class BranchVerbs(IConfiguration configuration, IHostEnvironment environment)
{
    private readonly TextWriter _out = Console.Out;

    public async Task<int> CreateAsync(string name, string? from, CancellationToken ct)
    {
        RefuseInProduction("create");
        if (DatabaseBranches.FindNameError(name) is { } error) throw new MigrationCommandException(error);
        await Branches().CreateAsync(name, from, ct);
        return WorkerExitCodes.Done;
    }

    public async Task<int> ListAsync(CancellationToken ct)
    {
        RefuseInProduction("list");
        var branches = await Branches().ListAsync(ct);
        foreach (var branch in branches)
        {
            _out.WriteLine($"{branch.Name}  from {branch.Source}  at {branch.CreatedAt:yyyy-MM-dd HH:mm:ss}Z  "
                + $"{DatabaseBranches.Size(branch.SizeBytes)}"
                + (branch.Role is null ? "" : $"  (detached workspace branch, role {branch.Role})"));
        }
        _out.WriteLine($"branch list: {branches.Count} branch(es).");
        return WorkerExitCodes.Done;
    }

    public async Task<int> DeleteAsync(string name, CancellationToken ct)
    {
        RefuseInProduction("delete");
        if (DatabaseBranches.FindNameError(name) is { } error) throw new MigrationCommandException(error);
        await Branches().DeleteAsync(name, ct);
        return WorkerExitCodes.Done;
    }

    private DatabaseBranches Branches() =>
        new(SystemDatabaseConnection.Build(configuration, "tcstudio-branch"),
            new Backups.PostgresTools(configuration["Backup:PostgresBin"]), _out);

    private void RefuseInProduction(string verb)
    {
        if (environment.IsProduction())
        {
            throw new MigrationCommandException(
                $"branch {verb} is refused in the Production environment: branches are for development (DOTNET_ENVIRONMENT is "
                    + $"{environment.EnvironmentName}).");
        }
    }
}
