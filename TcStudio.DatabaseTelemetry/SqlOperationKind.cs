namespace TcStudio.DatabaseTelemetry;

/// <summary>
/// The kind of a SQL command from its first keyword (comments and whitespace skipped), as one of five constant
/// strings. It runs for every command, so it reads the text in place and allocates nothing.
/// </summary>
public static class SqlOperationKind
{
    public const string Select = "select";
    public const string Insert = "insert";
    public const string Update = "update";
    public const string Delete = "delete";
    public const string Other = "other";

    /// <summary>
    /// Opens the transaction-settings statement the API puts in front of a request's commands (lock and statement
    /// timeouts); the kind is that of the command after it.
    /// </summary>
    public const string SettingsPrefixMarker = "/* tcstudio:transaction-settings */";

    public static string Of(ReadOnlySpan<char> sql)
    {
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (char.IsWhiteSpace(c) || c is '(' or ';') { i++; continue; }
            if (c == '-' && i + 1 < sql.Length && sql[i + 1] == '-')
            {
                var end = sql[i..].IndexOf('\n');
                if (end < 0) return Other;
                i += end + 1;
                continue;
            }
            if (c == '/' && sql[i..].StartsWith(SettingsPrefixMarker, StringComparison.Ordinal))
            {
                var end = sql[i..].IndexOf(';');
                if (end < 0) return Other;
                i += end + 1;
                continue;
            }
            if (c == '/' && i + 1 < sql.Length && sql[i + 1] == '*')
            {
                var end = sql[(i + 2)..].IndexOf("*/", StringComparison.Ordinal);
                if (end < 0) return Other;
                i += end + 4;
                continue;
            }
            break;
        }

        var rest = sql[i..];
        var length = 0;
        while (length < rest.Length && char.IsAsciiLetter(rest[length])) length++;
        var keyword = rest[..length];
        return keyword.Equals("select", StringComparison.OrdinalIgnoreCase) ? Select
            : keyword.Equals("insert", StringComparison.OrdinalIgnoreCase) ? Insert
            : keyword.Equals("update", StringComparison.OrdinalIgnoreCase) ? Update
            : keyword.Equals("delete", StringComparison.OrdinalIgnoreCase) ? Delete
            : Other;
    }
}
