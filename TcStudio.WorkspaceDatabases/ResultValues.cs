using System.Collections;
using System.Globalization;

namespace TcStudio.WorkspaceDatabases;

/// <summary>Turns driver values into what JSON can carry faithfully (anything exotic becomes its text form).</summary>
public static class ResultValues
{
    public static object? Normalize(object? value) => value switch
    {
        null or DBNull => null,
        double d when !double.IsFinite(d) => d.ToString(CultureInfo.InvariantCulture),
        float f when !float.IsFinite(f) => f.ToString(CultureInfo.InvariantCulture),
        string or bool or byte or short or int or long or decimal or double or float or Guid
            or DateTime or DateTimeOffset or DateOnly or TimeOnly or TimeSpan or byte[] or System.Text.Json.JsonElement => value,
        char c => c.ToString(),
        sbyte or ushort or uint or ulong => Convert.ToDecimal(value, CultureInfo.InvariantCulture),
        Array array => array.Cast<object?>().Select(Normalize).ToArray(),
        IList list => list.Cast<object?>().Select(Normalize).ToArray(),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture),
    };
}

/// <summary>
/// How many bytes of results one execution has taken so far (an estimate of their JSON size: UTF-8 text, base64
/// binary, a few bytes per number), against the cap <see cref="ExecutionLimits.MaxBytes"/>. A row that would pass the
/// cap is not kept: readers stop there and cancel the command, so the API never holds more than the cap plus one row.
/// </summary>
public sealed class ResultBudget(long maxBytes)
{
    public long Used { get; private set; }
    public bool Exhausted { get; private set; }

    /// <summary>
    /// Whether a row of <paramref name="bytes"/> (as the server measured it) still fits, before it is read; false
    /// (and <see cref="Exhausted"/>) when it would pass the cap.
    /// </summary>
    public bool Fits(long bytes)
    {
        if (Used + bytes <= maxBytes) return true;
        Exhausted = true;
        return false;
    }

    /// <summary>Adds a row if it fits; false (and <see cref="Exhausted"/>) when it would pass the cap.</summary>
    public bool TryAdd(object?[] row)
    {
        long size = 2;
        foreach (var value in row) size += SizeOf(value) + 1;
        if (Used + size > maxBytes)
        {
            Exhausted = true;
            return false;
        }
        Used += size;
        return true;
    }

    private static long SizeOf(object? value) => value switch
    {
        null => 4,
        string s => System.Text.Encoding.UTF8.GetByteCount(s) + 2,
        byte[] bytes => (bytes.LongLength + 2) / 3 * 4 + 2,
        System.Text.Json.JsonElement json => json.GetRawText().Length,
        object?[] items => items.Sum(SizeOf) + items.Length + 2,
        _ => 32,
    };
}
