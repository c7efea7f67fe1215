using System.Runtime.InteropServices;

namespace TcStudio.AppHost;

/// <summary>The one POSIX call .NET has no managed API for: sending a signal other than SIGKILL.</summary>
internal static class Posix
{
    public const int SIGINT = 2;
    public const int SIGTERM = 15;

    public static bool SendSignal(int processId, int signal) => kill(processId, signal) == 0;

    /// <summary>True while a process with this id exists (signal 0 checks without sending anything).</summary>
    public static bool IsAlive(int processId) =>
        kill(processId, 0) == 0 || Marshal.GetLastPInvokeError() == 1; // EPERM: it exists, owned by someone else

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
