namespace TcStudio.AppHost;

public static class Program
{
    public static int Main()
    {
        Console.Error.WriteLine("The AppHost is not wired yet.");
        return 1;
    }
}
