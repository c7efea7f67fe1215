using System.Text;

namespace TcStudio.Tests.Infrastructure;

/// <summary>Request bodies written by hand, for the cases a serialized object cannot express (malformed, huge, odd types).</summary>
public static class RawJson
{
    public static StringContent Content(string body, string mediaType = "application/json") => new(body, Encoding.UTF8, mediaType);
}
