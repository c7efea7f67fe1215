using System.Text.RegularExpressions;

namespace TcStudio.Api.Infrastructure;

/// <summary>
/// Collects per-field validation errors for an RFC 9457 validation problem. Handlers validate their request with it
/// first and return <see cref="ToProblem"/> before touching the database, so bad input never changes anything.
/// </summary>
public sealed partial class FieldErrors
{
    private readonly Dictionary<string, List<string>> _errors = new(StringComparer.Ordinal);

    public bool Any => _errors.Count > 0;

    public FieldErrors Add(string field, string message)
    {
        if (!_errors.TryGetValue(field, out var list)) _errors[field] = list = [];
        list.Add(message);
        return this;
    }

    /// <summary>
    /// Free text: optional or required, bounded, valid Unicode (no lone surrogates), and free of NUL and other control
    /// characters (C0 except tab and line breaks, DEL, C1).
    /// </summary>
    public FieldErrors Text(string field, string? value, int maxLength, bool required = false, int minLength = 0)
    {
        if (value is null)
        {
            if (required) Add(field, $"'{field}' is required.");
            return this;
        }
        if (required && string.IsNullOrWhiteSpace(value)) return Add(field, $"'{field}' must not be empty.");
        if (value.Length < minLength) return Add(field, $"'{field}' must be at least {minLength} characters long.");
        if (value.Length > maxLength) return Add(field, $"'{field}' must be at most {maxLength} characters long.");
        if (HasLoneSurrogate(value)) return Add(field, $"'{field}' is not valid Unicode text (it holds a lone surrogate).");
        if (HasForbiddenControlCharacter(value)) return Add(field, $"'{field}' must not contain NUL or control characters.");
        return this;
    }

    /// <summary>
    /// A name people read (workspace, display name): <see cref="Text"/>, and also no line breaks or tabs and no
    /// invisible characters that change how text reads: line and paragraph separators, bidirectional embeddings,
    /// overrides and isolates (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C), zero-width characters
    /// (U+200B–U+200D, U+2060, U+180E) and the byte order mark (U+FEFF).
    /// </summary>
    public FieldErrors Name(string field, string? value, int maxLength, bool required = false)
    {
        var before = Count(field);
        Text(field, value, maxLength, required);
        if (value is null || Count(field) > before) return this;
        if (FindInvisibleCharacter(value) is { } c)
        {
            Add(field, $"'{field}' must not contain control, formatting or invisible characters (found U+{(int)c:X4}).");
        }
        return this;
    }

    /// <summary>A number that must be finite (query strings bind NaN, Infinity and 1e400 to doubles).</summary>
    public FieldErrors Finite(string field, double? value)
    {
        if (value is { } v && !double.IsFinite(v)) Add(field, $"'{field}' must be a finite number.");
        return this;
    }

    private int Count(string field) => _errors.TryGetValue(field, out var list) ? list.Count : 0;

    /// <summary>A value that must match a pattern (slugs, usernames, identifiers).</summary>
    public FieldErrors Pattern(string field, string? value, Regex pattern, string description, bool required = true)
    {
        if (value is null)
        {
            if (required) Add(field, $"'{field}' is required.");
            return this;
        }
        if (!pattern.IsMatch(value)) Add(field, $"'{field}' must be {description}.");
        return this;
    }

    public FieldErrors OneOf(string field, string? value, IReadOnlyCollection<string> allowed, bool required = true)
    {
        if (value is null)
        {
            if (required) Add(field, $"'{field}' is required.");
            return this;
        }
        if (!allowed.Contains(value)) Add(field, $"'{field}' must be one of: {string.Join(", ", allowed)}.");
        return this;
    }

    public FieldErrors Range(string field, int? value, int min, int max)
    {
        if (value is { } v && (v < min || v > max)) Add(field, $"'{field}' must be between {min} and {max}.");
        return this;
    }

    public Microsoft.AspNetCore.Http.HttpResults.ValidationProblem ToProblem(string? title = null) =>
        TypedResults.ValidationProblem(
            _errors.ToDictionary(e => e.Key, e => e.Value.ToArray()),
            title: title ?? "The request is not valid.");

    public static bool HasForbiddenControlCharacter(string value)
    {
        foreach (var c in value)
        {
            if (c < ' ' && c is not ('\t' or '\n' or '\r')) return true;
            if (c is >= '\u007f' and <= '\u009f') return true;
        }
        return false;
    }

    /// <summary>The first character a name must not hold (see <see cref="Name"/>), or null.</summary>
    public static char? FindInvisibleCharacter(string value)
    {
        foreach (var c in value)
        {
            if (c < ' ' || c is >= '\u007f' and <= '\u009f') return c;
            if (c is '\u2028' or '\u2029'                       // line and paragraph separators
                or (>= '\u202a' and <= '\u202e')                // bidi embeddings and overrides
                or (>= '\u2066' and <= '\u2069')                // bidi isolates
                or '\u200e' or '\u200f' or '\u061c'              // bidi marks
                or (>= '\u200b' and <= '\u200d') or '\u2060' or '\u180e' // zero-width
                or '\ufeff')                                    // byte order mark
            {
                return c;
            }
        }
        return null;
    }

    public static bool HasLoneSurrogate(string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            if (char.IsHighSurrogate(value[i]) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1])) i++;
            else if (char.IsSurrogate(value[i])) return true;
        }
        return false;
    }

    /// <summary>3–64 letters, digits, '.', '_', '-' (the database's ck_users_username_format).</summary>
    [GeneratedRegex("^[A-Za-z0-9._-]{3,64}\\z")]
    public static partial Regex Username();

    /// <summary>2–63 lowercase letters, digits, hyphens; no leading or trailing hyphen (ck_workspaces_slug_format).</summary>
    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]\\z")]
    public static partial Regex Slug();

    /// <summary>Optional schema prefix, then an identifier; 128 at most (ck_stored_procedures_name_format).</summary>
    [GeneratedRegex("^(?=.{1,128}\\z)([A-Za-z_][A-Za-z0-9_]*\\.)?[A-Za-z_][A-Za-z0-9_]*\\z")]
    public static partial Regex ProcedureName();

    [GeneratedRegex("^[^@\\s]+@[^@\\s]+\\z")]
    public static partial Regex Email();
}
