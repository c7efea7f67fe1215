global using Microsoft.Extensions.Configuration;
global using Microsoft.Extensions.DependencyInjection;
global using Microsoft.Extensions.Hosting;
global using Microsoft.Extensions.Logging.Abstractions;
global using TcStudio.Benchmarks.Harness;
global using TcStudio.Benchmarks.Load;
