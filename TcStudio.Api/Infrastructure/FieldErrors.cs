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

    /// <summary>Free text: optional or required, bounded, and free of NUL and other control characters except tab and newlines.</summary>
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
        if (HasForbiddenControlCharacter(value)) return Add(field, $"'{field}' must not contain NUL or control characters.");
        return this;
    }

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
            if (c == '\u007f') return true;
        }
        return false;
    }

    /// <summary>3–64 letters, digits, '.', '_', '-' (the database's ck_users_username_format).</summary>
    [GeneratedRegex("^[A-Za-z0-9._-]{3,64}$")]
    public static partial Regex Username();

    /// <summary>2–63 lowercase letters, digits, hyphens; no leading or trailing hyphen (ck_workspaces_slug_format).</summary>
    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")]
    public static partial Regex Slug();

    /// <summary>Optional schema prefix, then an identifier; 128 at most (ck_stored_procedures_name_format).</summary>
    [GeneratedRegex("^(?=.{1,128}$)([A-Za-z_][A-Za-z0-9_]*\\.)?[A-Za-z_][A-Za-z0-9_]*$")]
    public static partial Regex ProcedureName();

    [GeneratedRegex("^[^@\\s]+@[^@\\s]+$")]
    public static partial Regex Email();
}
