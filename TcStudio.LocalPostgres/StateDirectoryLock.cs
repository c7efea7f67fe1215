namespace TcStudio.LocalPostgres;

/// <summary>
/// One owner per state directory: a second AppHost on the same cluster would stop it under the first's feet. The lock
/// is the kernel's (flock through FileShare.None on <c>apphost.lock</c>), so it is released however the holder dies.
/// </summary>
public sealed class StateDirectoryLock : IDisposable
{
    public const string FileName = "apphost.lock";

    private readonly FileStream _file;

    private StateDirectoryLock(FileStream file) => _file = file;

    /// <summary>Takes the lock, or returns null when another process holds it.</summary>
    public static StateDirectoryLock? TryAcquire(string stateDirectory)
    {
        Directory.CreateDirectory(stateDirectory);
        try
        {
            return new StateDirectoryLock(new FileStream(Path.Combine(stateDirectory, FileName), FileMode.OpenOrCreate,
                FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException)
        {
            return null;
        }
    }

    public void Dispose() => _file.Dispose();
}
