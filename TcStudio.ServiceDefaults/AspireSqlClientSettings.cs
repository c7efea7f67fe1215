using Microsoft.Extensions.Configuration;

namespace TcStudio.ServiceDefaults;

/// <summary>
/// SQL Server connections (workspace databases) have no Aspire client integration that can be restored here, so they
/// keep their own wiring but read Aspire's settings shape: <c>Aspire:Microsoft:Data:SqlClient</c> (and its keyed form
/// <c>Aspire:Microsoft:Data:SqlClient:sql</c>, which wins), <c>DisableTracing</c> / <c>DisableMetrics</c> turning the
/// SqlClient instrumentation off, <c>ConnectionString</c> standing in for <c>ConnectionStrings:sql</c> (read where the server is registered:
/// TcStudio.WorkspaceDatabases' WorkspaceServerRegistry).
/// </summary>
public sealed record AspireSqlClientSettings(bool Tracing, bool Metrics)
{
    public const string SettingsSection = "Aspire:Microsoft:Data:SqlClient";
    public const string ConnectionName = "sql";

    public static AspireSqlClientSettings Read(IConfiguration configuration) =>
        new(!Flag(configuration, "DisableTracing"), !Flag(configuration, "DisableMetrics"));

    private static bool Flag(IConfiguration configuration, string name) =>
        configuration.GetValue<bool?>($"{SettingsSection}:{ConnectionName}:{name}")
        ?? configuration.GetValue<bool?>($"{SettingsSection}:{name}")
        ?? false;
}
