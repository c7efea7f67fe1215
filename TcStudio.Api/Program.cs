using TcStudio.Data;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddTcStudioData();
builder.AddDatabaseInsights();

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();

public partial class Program;
