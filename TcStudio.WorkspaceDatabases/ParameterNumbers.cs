using System.Globalization;

namespace TcStudio.WorkspaceDatabases;

/// <summary>
/// Floating-point parameter values: .NET reads "NaN", "Infinity" and 1e400 (which overflows to infinity) as doubles,
/// and neither caller nor routine means them; they are refused (a WorkspaceParameterException naming the parameter) like any value that
/// does not fit its type.
/// </summary>
internal static class ParameterNumbers
{
    public static double FiniteDouble(string text)
    {
        var value = double.Parse(text, CultureInfo.InvariantCulture);
        return double.IsFinite(value) ? value : throw new OverflowException("Not a finite number.");
    }

    public static float FiniteSingle(string text)
    {
        var value = float.Parse(text, CultureInfo.InvariantCulture);
        return float.IsFinite(value) ? value : throw new OverflowException("Not a finite number.");
    }
}
