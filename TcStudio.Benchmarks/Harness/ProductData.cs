using Npgsql;
using TcStudio.SystemDatabase;
using TcStudio.SystemDatabase.Seeding;

namespace TcStudio.Benchmarks.Harness;

/// <summary>
/// The product's data layer for one database, registered exactly as the services register it
/// (<see cref="TcStudioDataExtensions.AddTcStudioData"/>): the pooled DbContext, the NpgsqlDataSource with the
/// Database section applied, the migrator, the seeder and the bulk writer.
/// </summary>
public sealed class ProductData : IAsyncDisposable
{
    public const string AdminPassword = "bench-admin-password";
    public const string UserPassword = "bench-user-password";

    private readonly IHost _host;

    private ProductData(IHost host, string connectionString)
    {
        _host = host;
        ConnectionString = connectionString;
    }

    public string ConnectionString { get; }
    public IServiceProvider Services => _host.Services;
    public NpgsqlDataSource DataSource => Services.GetRequiredService<NpgsqlDataSource>();

    public static IReadOnlyDictionary<string, string?> Settings(string connectionString) => new Dictionary<string, string?>
    {
        ["ConnectionStrings:tcstudio"] = connectionString,
        ["Seed:AdminPassword"] = AdminPassword,
        ["Seed:UserPassword"] = UserPassword,
        ["Logging:LogLevel:Default"] = "Warning",
    };

    public static ProductData Create(string connectionString, IReadOnlyDictionary<string, string?>? extra = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            EnvironmentName = Environments.Production,
            ApplicationName = "TcStudio.Benchmarks",
            DisableDefaults = true,
        });
        builder.Configuration.AddInMemoryCollection(Settings(connectionString));
        if (extra is not null) builder.Configuration.AddInMemoryCollection(extra);
        builder.AddTcStudioData();
        return new ProductData(builder.Build(), connectionString);
    }

    public AsyncServiceScope Scope() => Services.CreateAsyncScope();

    /// <summary>Migrates (under the worker's lock, as the worker does) and returns the steps.</summary>
    public async Task<IReadOnlyList<MigrationStep>> MigrateAsync(string? target = null)
    {
        await using var migrationLock = await MigrationLock.AcquireAsync(
            new NpgsqlConnectionStringBuilder(ConnectionString), NullLogger.Instance, CancellationToken.None);
        await using var scope = Scope();
        return await scope.ServiceProvider.GetRequiredService<SystemDatabaseMigrator>().MigrateAsync(target);
    }

    public async Task<IReadOnlyList<MigrationStep>> RevertAsync(string? target)
    {
        await using var migrationLock = await MigrationLock.AcquireAsync(
            new NpgsqlConnectionStringBuilder(ConnectionString), NullLogger.Instance, CancellationToken.None);
        await using var scope = Scope();
        return await scope.ServiceProvider.GetRequiredService<SystemDatabaseMigrator>().RevertAsync(target);
    }

    public async Task SeedAsync()
    {
        await using var scope = Scope();
        await scope.ServiceProvider.GetRequiredService<SystemSeeder>().SeedAsync();
    }

    public async Task<T> WithContextAsync<T>(Func<TcStudioDbContext, Task<T>> work)
    {
        await using var scope = Scope();
        return await work(scope.ServiceProvider.GetRequiredService<TcStudioDbContext>());
    }

    public async ValueTask DisposeAsync()
    {
        if (_host is IAsyncDisposable asyncDisposable) await asyncDisposable.DisposeAsync();
        else _host.Dispose();
    }
}

/// <summary>Raw SQL helpers for setup and baselines (never the measured product path).</summary>
public static class Sql
{
    public static async Task ExecuteAsync(string connectionString, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// Runs a migration script the way a DBA would, with psql: statement by statement, honouring the script's own
    /// START TRANSACTION / COMMIT, so statements that must run outside a transaction (CREATE INDEX CONCURRENTLY) can.
    /// </summary>
    public static async Task RunScriptAsync(string connectionString, string script)
    {
        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        var file = Path.GetTempFileName();
        await File.WriteAllTextAsync(file, script);
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo(
                Path.Combine(TcStudio.LocalPostgres.LocalPostgresCluster.FindBinDirectory(), "psql"))
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in new[] { "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", settings.Host!, "-p", settings.Port.ToString(),
                         "-U", settings.Username!, "-d", settings.Database!, "-f", file })
            {
                start.ArgumentList.Add(argument);
            }
            start.Environment["PGPASSWORD"] = settings.Password ?? "";
            using var psql = System.Diagnostics.Process.Start(start)!;
            var errors = psql.StandardError.ReadToEndAsync();
            await psql.StandardOutput.ReadToEndAsync();
            await psql.WaitForExitAsync();
            if (psql.ExitCode != 0) throw new InvalidOperationException($"psql failed: {(await errors).Trim()}");
        }
        finally
        {
            File.Delete(file);
        }
    }

    public static async Task<T> ScalarAsync<T>(string connectionString, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public static async Task<List<string>> ColumnAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<string>();
        while (await reader.ReadAsync()) values.Add(reader.IsDBNull(0) ? "" : Convert.ToString(reader.GetValue(0))!);
        return values;
    }

    /// <summary>Reads every column of every row, as a client materializing the result would.</summary>
    public static async Task<int> DrainAsync(NpgsqlDataReader reader)
    {
        var rows = 0;
        var values = new object[reader.FieldCount];
        while (await reader.ReadAsync())
        {
            reader.GetValues(values);
            rows++;
        }
        return rows;
    }
}
