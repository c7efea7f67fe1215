using Scalar.AspNetCore;
using TcStudio.Api.Auth;
using TcStudio.Api.Environments;
using TcStudio.Api.Procedures;
using TcStudio.Api.Roles;
using TcStudio.Api.Users;
using TcStudio.Api.WorkspaceDatabases;
using TcStudio.Api.Workspaces;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
builder.AddTcStudioData();
builder.AddApiDefaults();
builder.AddTcStudioAuthentication();
builder.AddWorkspaceScope();
builder.AddWorkspaceDatabases();

var app = builder.Build();
if (await app.RunStartupChecksAsync() is { } exitCode) return exitCode;

app.UseApiDefaults();
app.UseAuthentication();
app.UseAuthorization();
app.UseSchemaReadinessGate();

app.MapDefaultEndpoints();
app.MapOpenApi();
app.MapScalarApiReference();

app.MapGroup("/api").RequireAuthorization()
    .MapAuthApi()
    .MapMeApi()
    .MapRolesApi()
    .MapWorkspacesApi()
    .MapEnvironmentsApi()
    .MapProceduresApi();

await app.RunAsync();
return 0;

public partial class Program;
