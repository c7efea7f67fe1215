using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.LocalPostgres;
using TcStudio.SystemDatabase;

[assembly: AssemblyFixture(typeof(TcStudio.Tests.Infrastructure.PostgresServer))]

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// The PostgreSQL server every data test uses: the one in TCSTUDIO_TEST_POSTGRES (a superuser connection string)
/// when set, otherwise a private throwaway cluster started from the machine's PostgreSQL binaries. It holds a
/// migrated template database, so each test class gets a fresh migrated database in milliseconds.
/// Tests that stop or start servers use <see cref="StartPrivateClusterAsync"/>, never this shared one.
/// </summary>
public sealed class PostgresServer : IAsyncLifetime
{
    private static int _databaseCounter;
    private readonly string _runId = Guid.NewGuid().ToString("N")[..8];
    private LocalPostgresCluster? _cluster;

    public NpgsqlConnectionStringBuilder Admin { get; private set; } = new();
    public string TemplateDatabase => $"tcstudio_template_{_runId}";
    public bool IsPrivateCluster => _cluster is not null;

    /// <summary>The private cluster (null with TCSTUDIO_TEST_POSTGRES).</summary>
    public LocalPostgresCluster? Cluster => _cluster;

    public async ValueTask InitializeAsync()
    {
        if (Environment.GetEnvironmentVariable("TCSTUDIO_TEST_POSTGRES") is { Length: > 0 } external)
        {
            Admin = new NpgsqlConnectionStringBuilder(external);
        }
        else
        {
            _cluster = await StartPrivateClusterAsync();
            Admin = new NpgsqlConnectionStringBuilder(_cluster.ConnectionString());
        }
        Admin.Pooling = true;

        await ExecuteAsync($"CREATE DATABASE {TemplateDatabase}");
        var options = new DbContextOptionsBuilder<TcStudioDbContext>()
            .UseNpgsql(ConnectionString(TemplateDatabase, pooling: false),
                npgsql => npgsql.MigrationsHistoryTable(TcStudioDbContext.MigrationsHistoryTable));
        TcStudioDataExtensions.ConfigureContext(options);
        await using (var db = new TcStudioDbContext(options.Options))
        {
            await db.Database.MigrateAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        if (_cluster is not null)
        {
            await _cluster.DestroyAsync();
        }
        else
        {
            await ExecuteAsync($"DROP DATABASE IF EXISTS {TemplateDatabase} WITH (FORCE)");
        }
    }

    /// <summary>A connection string to <paramref name="database"/> with the server's superuser credentials.</summary>
    public string ConnectionString(string database, bool pooling = true) =>
        new NpgsqlConnectionStringBuilder(Admin.ConnectionString) { Database = database, Pooling = pooling }.ConnectionString;

    /// <summary>Creates a database: a copy of the migrated template, or an empty one.</summary>
    public async Task<string> CreateDatabaseAsync(bool migrated = true)
    {
        var name = $"tcstudio_test_{_runId}_{Interlocked.Increment(ref _databaseCounter)}";
        await ExecuteAsync(migrated ? $"CREATE DATABASE {name} TEMPLATE {TemplateDatabase}" : $"CREATE DATABASE {name}");
        return name;
    }

    public async Task DropDatabaseAsync(string name)
    {
        NpgsqlConnection.ClearPool(new NpgsqlConnection(ConnectionString(name)));
        await ExecuteAsync($"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    }

    /// <summary>
    /// Drops login roles a test made (roles are server-wide). One still granted something in another database of this
    /// throwaway cluster is left: it goes with the cluster.
    /// </summary>
    public async Task DropRolesAsync(IEnumerable<string> roles)
    {
        foreach (var role in roles)
        {
            try
            {
                await ExecuteAsync($"DROP ROLE IF EXISTS {role}");
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DependentObjectsStillExist)
            {
            }
        }
    }

    /// <summary>Runs SQL on the maintenance database (database-level DDL).</summary>
    public async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString("postgres", pooling: false));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// A cluster of the test's own (for tests that stop, start or break a server). Not durable: fast and throwaway.
    /// The caller destroys it.
    /// </summary>
    public static async Task<LocalPostgresCluster> StartPrivateClusterAsync(int port = 0, bool start = true, bool tls = true)
    {
        var cluster = new LocalPostgresCluster(new LocalPostgresOptions
        {
            StateDirectory = Path.Combine(Path.GetTempPath(), "tcstudio-tests", Guid.NewGuid().ToString("N")[..12]),
            Port = port,
            Durable = false,
            MaxConnections = 300,
            Tls = tls,
        });
        if (start)
        {
            await cluster.StartAsync();
        }
        return cluster;
    }
}
