using System.Collections;
using System.Globalization;

namespace TcStudio.Data.WorkspaceDatabases;

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
