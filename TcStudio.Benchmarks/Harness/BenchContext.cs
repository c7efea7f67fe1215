using System.Diagnostics;
using Npgsql;
using TcStudio.SystemDatabase;

namespace TcStudio.Benchmarks.Harness;

/// <summary>
/// What the scenarios share in one benchmark run, made on first use: the system database (migrated, seeded, with a
/// workspace of procedures to read), the API in this process, a bearer token, the load generator process.
/// </summary>
public sealed class BenchContext(BenchOptions options, BenchEnvironment environment) : IAsyncDisposable
{
    /// <summary>The workspace the read and pool scenarios hit: the seeded one, filled with procedures.</summary>
    public const string ReadWorkspace = "twsbp";

    public BenchOptions Options { get; } = options;
    public BenchEnvironment Environment { get; } = environment;

    private ProductData? _system;
    private ApiHost? _api;
    private IReadOnlyDictionary<string, string?>? _apiSettings;
    private LoadGeneratorProcess? _loadGenerator;
    private string? _userToken;

    public string SystemConnectionString => Environment.ConnectionString(BenchEnvironment.SystemDatabase);

    public static void Log(string message) => Console.Error.WriteLine($"[bench {DateTime.Now:HH:mm:ss}] {message}");

    /// <summary>The system database, migrated and seeded, its read workspace holding procedures and activity.</summary>
    public async Task<ProductData> SystemAsync()
    {
        if (_system is not null) return _system;
        var stopwatch = Stopwatch.StartNew();
        await Environment.CreateDatabaseAsync(BenchEnvironment.SystemDatabase);
        var system = ProductData.Create(SystemConnectionString);
        await system.MigrateAsync();
        await system.SeedAsync();

        var users = await DataGenerator.ReadSeededUsersAsync(SystemConnectionString);
        var workspace = await Sql.ScalarAsync<Guid>(SystemConnectionString, "SELECT id FROM workspaces WHERE slug = @s", ("s", ReadWorkspace));
        await DataGenerator.CopyProceduresAsync(SystemConnectionString, [(workspace, 0, Options.ReadWorkspaceProcedures)], users.AdminId);
        await DataGenerator.CopyActivitiesAsync(SystemConnectionString, [(workspace, Options.ReadWorkspaceProcedures)], users.UserId);
        await Sql.ExecuteAsync(SystemConnectionString, "VACUUM ANALYZE");
        Log($"system database ready ({Options.ReadWorkspaceProcedures} procedures in {ReadWorkspace}) in {stopwatch.Elapsed.TotalSeconds:0.0} s");
        return _system = system;
    }

    /// <summary>The API over the system database with the product's defaults, or with <paramref name="settings"/>.</summary>
    public async Task<ApiHost> ApiAsync(IReadOnlyDictionary<string, string?>? settings = null)
    {
        await SystemAsync();
        var wanted = settings ?? new Dictionary<string, string?>();
        if (_api is not null && SameSettings(_apiSettings!, wanted)) return _api;
        if (_api is not null)
        {
            await _api.DisposeAsync();
            _userToken = null; // each API instance signs with its own key
            NpgsqlConnection.ClearAllPools();
        }
        var stopwatch = Stopwatch.StartNew();
        _api = await ApiHost.StartAsync(await AppRoleConnectionStringAsync(), wanted);
        _apiSettings = wanted;
        Log($"API listening on {_api.BaseUrl} "
            + $"({(wanted.Count == 0 ? "product defaults" : string.Join(", ", wanted.Select(s => $"{s.Key}={s.Value}")))}) "
            + $"in {stopwatch.Elapsed.TotalSeconds:0.0} s");
        return _api;
    }

    private const string AppRolePassword = "bench-app-role";

    /// <summary>
    /// The system database as the API connects to it in production and in the tests (ApiFixture): its least-privilege
    /// app role, subject to row-level security. The role is made as the worker's roles step makes it (idempotent).
    /// </summary>
    public async Task<string> AppRoleConnectionStringAsync()
    {
        var names = TcStudio.SystemDatabase.Security.SystemRoleNames.For(BenchEnvironment.SystemDatabase);
        await TcStudio.SystemDatabase.Security.SystemDatabaseRoles.EnsureAsync(SystemConnectionString, names,
            new TcStudio.SystemDatabase.Security.SystemDatabaseRoles.Passwords(null, AppRolePassword, null));
        return new NpgsqlConnectionStringBuilder(SystemConnectionString) { Username = names.App, Password = AppRolePassword }.ConnectionString;
    }

    private Baseline.BaselineServer? _baseline;
    private ApiHost? _baselineFor;

    /// <summary>
    /// The hand-written HTTP baseline (<see cref="Baseline.BaselineServer"/>), in this process like the API, over the
    /// same database as the same app role, validating the API's tokens with its signing key.
    /// </summary>
    public async Task<Baseline.BaselineServer> BaselineAsync()
    {
        var api = await ApiAsync(_apiSettings);
        if (_baseline is not null && ReferenceEquals(_baselineFor, api)) return _baseline;
        if (_baseline is not null) await _baseline.DisposeAsync();
        var database = new DatabaseOptions();
        var auth = new TcStudio.Api.Auth.AuthOptions();
        _baseline = await Baseline.BaselineServer.StartAsync(RawDataSource(api.ConnectionString, untraced: true),
            new Microsoft.IdentityModel.Tokens.SymmetricSecurityKey(Convert.FromBase64String(api.SigningKey)),
            database.LockTimeout, database.RequestStatementTimeout, auth.SessionCheckInterval);
        _baselineFor = api;
        Log($"HTTP baseline listening on {_baseline.BaseUrl}");
        return _baseline;
    }

    public async Task<string> UserTokenAsync()
    {
        var api = await ApiAsync(_apiSettings);
        return _userToken ??= await api.LoginAsync("user", ProductData.UserPassword);
    }

    private readonly Dictionary<string, Task<object>> _shared = [];

    /// <summary>Something several scenarios use (the scale databases), made once on first use.</summary>
    public async Task<T> SharedAsync<T>(string key, Func<Task<T>> create) where T : class
    {
        if (!_shared.TryGetValue(key, out var task))
        {
            task = _shared[key] = CreateAsync();
        }
        return (T)await task;

        async Task<object> CreateAsync() => await create();
    }

    public LoadGeneratorProcess LoadGenerator => _loadGenerator ??= StartLoadGenerator();

    private static LoadGeneratorProcess StartLoadGenerator()
    {
        var generator = LoadGeneratorProcess.Start();
        Log($"load generator started (pid {generator.Id})");
        return generator;
    }

    /// <summary>
    /// A raw Npgsql data source for baselines with the product's connection settings (pool bounds, auto-prepare,
    /// timeouts) from <see cref="SystemDatabaseConnection.Build"/>, optionally overridden.
    /// </summary>
    /// <param name="untraced">
    /// No Npgsql traces: the API in this process listens to every Npgsql activity (its command monitor and slow-query
    /// log), which would charge the baseline's commands with the product's telemetry work.
    /// </param>
    public NpgsqlDataSource RawDataSource(string connectionString, IReadOnlyDictionary<string, string?>? settings = null, bool untraced = false)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:tcstudio"] = connectionString })
            .AddInMemoryCollection(settings ?? new Dictionary<string, string?>())
            .Build();
        var builder = new NpgsqlDataSourceBuilder(SystemDatabaseConnection.Build(configuration, "tcstudio-bench-raw").ConnectionString)
        {
            Name = "bench-raw",
        };
        if (untraced) builder.ConfigureTracing(tracing => tracing.ConfigureCommandFilter(_ => false).ConfigureBatchFilter(_ => false));
        return builder.Build();
    }

    public int PagesOf(int rows, int pageSize = 50) => Math.Max(1, Math.Min(10, rows / pageSize));

    private static bool SameSettings(IReadOnlyDictionary<string, string?> a, IReadOnlyDictionary<string, string?> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);

    /// <summary>Stops the API (if running) so a scenario can run without it competing for the machine.</summary>
    public async Task StopApiAsync()
    {
        if (_baseline is not null) await _baseline.DisposeAsync();
        _baseline = null;
        if (_api is null) return;
        await _api.DisposeAsync();
        _api = null;
        _userToken = null;
        NpgsqlConnection.ClearAllPools();
    }

    public async ValueTask DisposeAsync()
    {
        if (_baseline is not null) await _baseline.DisposeAsync();
        if (_loadGenerator is not null) await _loadGenerator.DisposeAsync();
        await StopApiAsync();
        if (_system is not null) await _system.DisposeAsync();
    }
}
