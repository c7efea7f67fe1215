namespace TcStudio.AppHost;

/// <summary>The same convention as the migration worker's.</summary>
public static class AppHostExitCodes
{
    /// <summary>Stopped on request (Ctrl+C, SIGINT, SIGTERM), everything shut down cleanly.</summary>
    public const int Stopped = 0;

    /// <summary>A step failed or a service died; the output says which and why.</summary>
    public const int Failed = 1;

    /// <summary>Bad configuration (one line naming the key) or a service that was never built.</summary>
    public const int BadConfiguration = 2;
}

/// <summary>Configuration the AppHost cannot run with. The message names the key and never echoes a value.</summary>
public sealed class AppHostConfigurationException(string message) : Exception(message);
