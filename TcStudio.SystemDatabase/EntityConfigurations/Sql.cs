namespace TcStudio.SystemDatabase.EntityConfigurations;

/// <summary>Small helpers for writing CHECK constraint SQL from the C# constants, so both sides agree.</summary>
internal static class Sql
{
    public static string InList(string column, IEnumerable<string> values) =>
        $"{column} IN ({string.Join(", ", values.Select(v => $"'{v}'"))})";
}
