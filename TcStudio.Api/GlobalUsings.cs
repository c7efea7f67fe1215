global using Microsoft.AspNetCore.Http.HttpResults;
global using Microsoft.EntityFrameworkCore;
global using TcStudio.Api.Infrastructure;
global using TcStudio.SystemDatabase;
global using TcStudio.SystemDatabase.Entities;
