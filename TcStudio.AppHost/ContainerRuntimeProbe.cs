using System.Diagnostics;

namespace TcStudio.AppHost;

/// <summary>
/// Whether a container runtime answers here: <c>docker info</c> (or the runtime Aspire is told to use through
/// ASPIRE_CONTAINER_RUNTIME, e.g. podman) must succeed within the time given. A client without its daemon (as on the
/// build machines) fails at once; a hung daemon is given up on.
/// </summary>
public static class ContainerRuntimeProbe
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(2);

    public static string RuntimeName =>
        Environment.GetEnvironmentVariable("ASPIRE_CONTAINER_RUNTIME") is { Length: > 0 } configured ? configured
        : Environment.GetEnvironmentVariable("DOTNET_ASPIRE_CONTAINER_RUNTIME") is { Length: > 0 } legacy ? legacy
        : "docker";

    public static bool Answers(TimeSpan timeout)
    {
        var start = new ProcessStartInfo(RuntimeName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "info", "--format", "{{.ServerVersion}}" }) start.ArgumentList.Add(argument);
        try
        {
            using var process = Process.Start(start);
            if (process is null) return false;
            // Drain the pipes so a chatty client can never block on a full one.
            _ = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                return false;
            }
            return process.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false; // no such client on PATH
        }
    }
}
