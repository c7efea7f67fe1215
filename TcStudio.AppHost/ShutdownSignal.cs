using System.Runtime.InteropServices;

namespace TcStudio.AppHost;

/// <summary>
/// Turns Ctrl+C, SIGINT, SIGTERM and SIGHUP (the terminal closed) into a cancellation token. The runtime's default
/// (exit at once) is cancelled so the orchestrator can stop the API first and PostgreSQL last, leaving no process
/// behind.
/// </summary>
internal sealed class ShutdownSignal : IDisposable
{
    private readonly CancellationTokenSource _requested = new();
    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _received;

    private ShutdownSignal()
    {
    }

    public CancellationToken Token => _requested.Token;

    public static ShutdownSignal Register()
    {
        var signal = new ShutdownSignal();
        foreach (var posixSignal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP })
        {
            signal._registrations.Add(PosixSignalRegistration.Create(posixSignal, signal.Handle));
        }
        return signal;
    }

    private void Handle(PosixSignalContext context)
    {
        context.Cancel = true;
        // A terminal's Ctrl+C and timeout(1) may deliver more than one signal; the first one starts the stop.
        if (Interlocked.Exchange(ref _received, 1) == 1) return;
        try
        {
            Console.Error.WriteLine($"{context.Signal} received: stopping TC Studio...");
        }
        catch (IOException)
        {
            // SIGHUP: the terminal is gone; stop all the same.
        }
        _requested.Cancel();
    }

    public void Dispose()
    {
        foreach (var registration in _registrations) registration.Dispose();
        _requested.Dispose();
    }
}
