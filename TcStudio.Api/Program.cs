using TcStudio.Api.Activities;
using TcStudio.Api.Admin;
using TcStudio.Api.Auth;
using TcStudio.Api.Environments;
using TcStudio.Api.Events;
using TcStudio.Api.Members;
using TcStudio.Api.Procedures;
using TcStudio.Api.Roles;
using TcStudio.Api.Users;
using TcStudio.Api.WorkspaceDatabases;
using TcStudio.Api.Workspaces;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
builder.AddTcStudioData();
builder.AddDatabaseInsights();
builder.AddApiDefaults();
builder.AddSecurityDefaults();
builder.AddTcStudioAuthentication();
builder.AddWorkspaceScope();
builder.AddWorkspaceDatabases();
builder.AddActivityEvents();

var app = builder.Build();
if (await app.RunStartupChecksAsync() is { } exitCode) return exitCode;

app.UseTrustedForwardedHeaders();
app.UseApiDefaults();
app.UseHttpsPolicy();
// Before authentication: checking a token's session reads the users table, which a half-migrated schema may lack.
app.UseSchemaReadinessGate();
app.UseAuthentication();
app.UseRequestRateLimits();
app.UseAuthorization();
app.UseRequestGuards();

app.MapDefaultEndpoints();
app.MapApiReference();

app.MapGroup("/api").RequireAuthorization().WithApiRequestGuards().WithReadRouting()
    .MapAuthApi()
    .MapMeApi()
    .MapRolesApi()
    .MapUsersApi()
    .MapWorkspacesApi()
    .MapMembersApi()
    .MapEnvironmentsApi()
    .MapProceduresApi()
    .MapActivitiesApi()
    .MapEventsApi()
    .MapDatabaseInsightsApi();

await app.RunAsync();
return 0;

public partial class Program;
