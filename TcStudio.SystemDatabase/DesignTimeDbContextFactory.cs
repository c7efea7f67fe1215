using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace TcStudio.SystemDatabase;

/// <summary>
/// Lets <c>dotnet ef migrations add</c> build the model without a host or a database. Commands that do touch a
/// database (<c>dotnet ef database update</c>) read ConnectionStrings__tcstudio from the environment.
/// </summary>
internal sealed class DesignTimeDbContextFactory : IDesignTimeDbContextFactory<TcStudioDbContext>
{
    public TcStudioDbContext CreateDbContext(string[] args)
    {
        var connectionString = Environment.GetEnvironmentVariable("ConnectionStrings__tcstudio")
            ?? "Host=localhost;Database=tc_studio";
        var options = new DbContextOptionsBuilder<TcStudioDbContext>()
            .UseNpgsql(connectionString, npgsql => npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable));
        TcStudioDataExtensions.ConfigureContext(options);
        return new TcStudioDbContext(options.Options);
    }
}
