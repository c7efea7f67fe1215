using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using static TcStudio.WorkspaceDatabases.Postgres.PostgresSqlText;

namespace TcStudio.WorkspaceDatabases.Postgres;

/// <summary>
/// Runs a deployed routine as the exec role, in one transaction that commits, with a server-side statement timeout.
/// The routine's own catalog definition (pg_proc) says how to call it and how to type each parameter; values are
/// always bound, and the SQL around them is written only from catalog names. Procedures run by CALL (OUT/INOUT
/// values become outputParameters); functions by SELECT * FROM f(...) (their rows become a result set). Several
/// result sets come from refcursors: a procedure's refcursor OUT/INOUT parameters, or a function returning refcursor
/// or SETOF refcursor, each fetched (within the row cap, counted across result sets) as one result set.
/// </summary>
internal static class PostgresRoutineExecutor
{
    private const string RoutineSignature = """
        SELECT p.prokind::text, n.nspname, p.proname, p.pronargdefaults,
               coalesce(p.proargmodes::text[], array_fill('i'::text, array[p.pronargs::int])) AS modes,
               p.proargnames,
               array(SELECT t.typname::text FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY a(oid, i)
                     JOIN pg_type t ON t.oid = a.oid ORDER BY a.i) AS type_names,
               array(SELECT format_type(a.oid, NULL) FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY a(oid, i)
                     ORDER BY a.i) AS type_sql,
               format_type(p.prorettype, NULL)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE lower(n.nspname) = lower($1) AND lower(p.proname) = lower($2) AND p.prokind IN ('f', 'p')
        """;

    private sealed record Argument(int Index, string? Name, char Mode, string TypeName, string TypeSql)
    {
        public bool IsInput => Mode is 'i' or 'b' or 'v';
        public bool IsOutput => Mode is 'o' or 'b';
    }

    public static async Task<ExecutionResult> ExecuteAsync(NpgsqlConnection npgsql, string procedureName,
        IReadOnlyDictionary<string, JsonElement> parameters, ExecutionLimits limits, string environment, CancellationToken cancellationToken)
    {
        var name = ProcedureName.Parse(procedureName);
        var stopwatch = Stopwatch.StartNew();

        await using var transaction = await npgsql.BeginTransactionAsync(cancellationToken);
        var commandTimeout = (int)Math.Ceiling(limits.Timeout.TotalSeconds) + 5; // the server-side timeout fires first
        await PostgresWorkspaceProvider.ExecuteAsync(npgsql, $"SET LOCAL statement_timeout = {(long)limits.Timeout.TotalMilliseconds}",
            cancellationToken);

        string kind, schema, routine, returnType;
        int defaults;
        var arguments = new List<Argument>();
        await using (var lookup = new NpgsqlCommand(RoutineSignature, npgsql))
        {
            lookup.Parameters.Add(new NpgsqlParameter { Value = name.SchemaOr(PostgresWorkspaceProvider.DefaultSchema) });
            lookup.Parameters.Add(new NpgsqlParameter { Value = name.Name });
            await using var reader = await lookup.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken))
            {
                throw new WorkspaceTargetException($"'{procedureName}' is not deployed in environment '{environment}'; publish it there first.",
                    environment);
            }
            kind = reader.GetString(0);
            schema = reader.GetString(1);
            routine = reader.GetString(2);
            defaults = reader.GetInt16(3);
            var modes = reader.GetFieldValue<string[]>(4);
            var names = reader.IsDBNull(5) ? [] : reader.GetFieldValue<string[]>(5);
            var typeNames = reader.GetFieldValue<string[]>(6);
            var typeSql = reader.GetFieldValue<string[]>(7);
            returnType = reader.GetString(8);
            for (var i = 0; i < typeNames.Length; i++)
            {
                var argName = i < names.Length && names[i].Length > 0 ? names[i] : null;
                arguments.Add(new Argument(i, argName, modes[i][0], typeNames[i], typeSql[i]));
            }
            if (await reader.ReadAsync(cancellationToken))
            {
                throw new WorkspaceTargetException($"'{procedureName}' has several overloads in environment '{environment}'; publish it again to "
                    + "keep one.", environment);
            }
        }

        var command = new NpgsqlCommand { Connection = npgsql, CommandTimeout = commandTimeout };
        await using var _ = command;
        var callArguments = BindArguments(command, arguments, defaults, kind == "p", parameters, environment);
        var target = $"{Quote(schema)}.{Quote(routine)}({callArguments})";
        var rowCap = limits.MaxRows;
        var resultSets = new List<ExecutionResultSet>();
        var outputs = new Dictionary<string, object?>(StringComparer.Ordinal);
        var cursors = new List<string>();
        var truncated = false;
        var total = 0;
        var budget = new ResultBudget(limits.MaxBytes);
        var cancelled = false;

        if (kind == "p")
        {
            command.CommandText = $"CALL {target}";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            if (reader.FieldCount > 0 && await reader.ReadAsync(cancellationToken))
            {
                for (var i = 0; i < reader.FieldCount; i++)
                {
                    if (reader.GetDataTypeName(i) == "refcursor") { if (!reader.IsDBNull(i)) cursors.Add(reader.GetString(i)); }
                    else
                    {
                        outputs[reader.GetName(i)] = ReadValue(reader, i);
                    }
                }
            }
        }
        else if (returnType == "void")
        {
            command.CommandText = $"SELECT FROM {target}";
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        else
        {
            // Each row comes with its size as text, computed by the server and read first (sequential access: a row is
            // not buffered whole), so a row past the byte cap is skipped on the wire, never held in memory. The
            // function's implicit alias (its name) keeps a scalar function's column named as before.
            var alias = Quote(routine);
            command.CommandText = $"SELECT octet_length({alias}::text) AS tcstudio_row_bytes, {alias}.* FROM {target} LIMIT {rowCap + 1}";
            await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);
            var allCursors = reader.FieldCount > 1 && Enumerable.Range(1, reader.FieldCount - 1).All(i => reader.GetDataTypeName(i) == "refcursor");
            if (allCursors)
            {
                while (await reader.ReadAsync(cancellationToken))
                {
                    for (var i = 1; i < reader.FieldCount; i++) if (!reader.IsDBNull(i)) cursors.Add(reader.GetString(i));
                }
            }
            else
            {
                var (set, cut) = await ReadResultSetAsync(reader, rowCap - total, budget, cancellationToken, sizeColumn: true);
                resultSets.Add(set);
                total += set.Rows.Count;
                truncated |= cut;
                if (budget.Exhausted) cancelled = await CancelAsync(command, reader);
            }
        }

        foreach (var cursor in cursors)
        {
            if (budget.Exhausted) break;
            await using var fetch = new NpgsqlCommand($"FETCH FORWARD {Math.Max(0, rowCap - total) + 1} FROM {Quote(cursor)}", npgsql)
            {
                CommandTimeout = commandTimeout,
            };
            await using var reader = await fetch.ExecuteReaderAsync(cancellationToken);
            var (set, cut) = await ReadResultSetAsync(reader, rowCap - total, budget, cancellationToken);
            resultSets.Add(set);
            total += set.Rows.Count;
            truncated |= cut;
            if (budget.Exhausted) cancelled = await CancelAsync(fetch, reader);
        }

        // A command cancelled at the byte cap aborts the transaction: the routine's own changes are rolled back with it.
        if (cancelled) await transaction.RollbackAsync(CancellationToken.None);
        else await transaction.CommitAsync(cancellationToken);
        // PostgreSQL does not report the rows a routine changed; only SQL Server has a count to give.
        return new ExecutionResult(resultSets, outputs, RowsAffected: null, stopwatch.ElapsedMilliseconds, truncated,
            budget.Exhausted ? ExecutionResult.ByBytes : truncated ? ExecutionResult.ByRows : null);
    }

    /// <summary>
    /// The byte cap was reached: asks the server to cancel the statement rather than stream (and discard) the rest,
    /// then closes the reader. True when the cancellation took effect (the transaction is then aborted).
    /// </summary>
    private static async Task<bool> CancelAsync(NpgsqlCommand command, NpgsqlDataReader reader)
    {
        try
        {
            command.Cancel();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // Could not reach the server to cancel: closing the reader below still skips the remaining rows.
        }
        try
        {
            await reader.DisposeAsync();
            return false;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.QueryCanceled)
        {
            return true;
        }
    }

    private static string BindArguments(NpgsqlCommand command, List<Argument> arguments, int defaults, bool isProcedure,
        IReadOnlyDictionary<string, JsonElement> supplied, string environment)
    {
        var inputs = arguments.Where(a => a.IsInput).ToList();
        var firstDefaulted = inputs.Count - defaults;
        var byName = supplied.ToDictionary(p => p.Key.TrimStart('@'), p => p.Value, StringComparer.OrdinalIgnoreCase);
        foreach (var key in byName.Keys)
        {
            if (!inputs.Any(a => string.Equals(a.Name, key, StringComparison.OrdinalIgnoreCase)))
            {
                throw new WorkspaceParameterException(key, $"'{key}' is not an input parameter of this routine "
                    + $"(it takes: {string.Join(", ", inputs.Select(a => a.Name ?? $"${a.Index + 1}"))}).", environment);
            }
        }

        // Named notation lets omitted parameters take their defaults wherever they are; procedures' OUT parameters
        // are passed as typed NULLs (PostgreSQL 14+ expects them in CALL).
        var parts = new List<string>();
        var inputIndex = 0;
        foreach (var argument in arguments)
        {
            if (!argument.IsInput)
            {
                if (isProcedure && argument.Mode == 'o') parts.Add(Named(argument, $"NULL::{argument.TypeSql}"));
                continue;
            }
            var position = inputIndex++;
            if (argument.Name is not null && byName.TryGetValue(argument.Name, out var value))
            {
                command.Parameters.Add(ToParameter(argument, value, environment));
                parts.Add(Named(argument, $"${command.Parameters.Count}::{argument.TypeSql}"));
            }
            else if (position < firstDefaulted)
            {
                if (argument.Mode == 'b' && argument.TypeName == "refcursor")
                {
                    parts.Add(Named(argument, "NULL::refcursor")); // the routine names its cursor
                    continue;
                }
                throw new WorkspaceParameterException(argument.Name ?? $"${position + 1}",
                    $"'{argument.Name ?? $"${position + 1}"}' is required (type {argument.TypeSql}).", environment);
            }
        }
        return string.Join(", ", parts);

        static string Named(Argument argument, string expression) =>
            argument.Name is null ? expression : $"{Quote(argument.Name)} => {expression}";
    }

    /// <summary>Converts a JSON value to the parameter's own type; a value that does not fit is a WorkspaceParameterException naming it.</summary>
    private static NpgsqlParameter ToParameter(Argument argument, JsonElement value, string environment)
    {
        var name = argument.Name!;
        if (value.ValueKind == JsonValueKind.Null) return new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = NpgsqlDbType.Unknown };
        try
        {
            return argument.TypeName.StartsWith('_')
                ? ArrayParameter(argument.TypeName[1..], value)
                : ScalarParameter(argument.TypeName, value);
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException or ArgumentException or JsonException)
        {
            throw new WorkspaceParameterException(name, $"'{name}' must be a value of type {argument.TypeSql}: {value.GetRawText()} is not.",
                environment);
        }
    }

    private static NpgsqlParameter ScalarParameter(string typeName, JsonElement value) => typeName switch
    {
        "int2" => new NpgsqlParameter { Value = short.Parse(Scalar(value), CultureInfo.InvariantCulture) },
        "int4" => new NpgsqlParameter { Value = int.Parse(Scalar(value), CultureInfo.InvariantCulture) },
        "int8" => new NpgsqlParameter { Value = long.Parse(Scalar(value), CultureInfo.InvariantCulture) },
        "numeric" => new NpgsqlParameter { Value = decimal.Parse(Scalar(value), NumberStyles.Float, CultureInfo.InvariantCulture) },
        "float4" => new NpgsqlParameter { Value = ParameterNumbers.FiniteSingle(Scalar(value)) },
        "float8" => new NpgsqlParameter { Value = ParameterNumbers.FiniteDouble(Scalar(value)) },
        "bool" => new NpgsqlParameter { Value = value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => bool.Parse(Scalar(value)),
        } },
        "uuid" => new NpgsqlParameter { Value = Guid.Parse(Scalar(value)) },
        "date" => new NpgsqlParameter { Value = DateOnly.Parse(Scalar(value), CultureInfo.InvariantCulture) },
        "timestamp" => new NpgsqlParameter
        {
            Value = DateTime.Parse(Scalar(value), CultureInfo.InvariantCulture, DateTimeStyles.None),
            NpgsqlDbType = NpgsqlDbType.Timestamp,
        },
        "timestamptz" => new NpgsqlParameter
        {
            Value = DateTimeOffset.Parse(Scalar(value), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal).UtcDateTime,
            NpgsqlDbType = NpgsqlDbType.TimestampTz,
        },
        "time" => new NpgsqlParameter { Value = TimeOnly.Parse(Scalar(value), CultureInfo.InvariantCulture) },
        "interval" => new NpgsqlParameter { Value = TimeSpan.Parse(Scalar(value), CultureInfo.InvariantCulture) },
        "json" => new NpgsqlParameter { Value = value.GetRawText(), NpgsqlDbType = NpgsqlDbType.Json },
        "jsonb" => new NpgsqlParameter { Value = value.GetRawText(), NpgsqlDbType = NpgsqlDbType.Jsonb },
        "bytea" => new NpgsqlParameter { Value = Convert.FromBase64String(Scalar(value)) },
        "text" or "varchar" or "bpchar" or "name" or "citext" or "refcursor" => new NpgsqlParameter { Value = Scalar(value),
            NpgsqlDbType = NpgsqlDbType.Text },
        // Enums, domains and other types: sent as text for the server to convert ($n::type in the call).
        _ => new NpgsqlParameter { Value = value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText(),
            NpgsqlDbType = NpgsqlDbType.Unknown },
    };

    private static NpgsqlParameter ArrayParameter(string elementType, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Array) throw new FormatException("Expected a JSON array.");
        var items = value.EnumerateArray().Select(item => item.ValueKind == JsonValueKind.Null ? null : ScalarParameter(elementType, item).Value)
            .ToList();
        var clrType = items.FirstOrDefault(i => i is not null)?.GetType() ?? typeof(string);
        var array = Array.CreateInstance(clrType.IsValueType ? typeof(Nullable<>).MakeGenericType(clrType) : clrType, items.Count);
        for (var i = 0; i < items.Count; i++) array.SetValue(items[i], i);
        return new NpgsqlParameter { Value = array };
    }

    /// <summary>A JSON scalar's text (strings unquoted); objects and arrays are not scalars.</summary>
    private static string Scalar(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        _ => throw new FormatException("Expected a scalar value."),
    };

    /// <param name="sizeColumn">Column 0 is the row's size (tcstudio_row_bytes), read before the values and not returned.</param>
    private static async Task<(ExecutionResultSet Set, bool Truncated)> ReadResultSetAsync(NpgsqlDataReader reader, int remaining,
        ResultBudget budget,
        CancellationToken ct, bool sizeColumn = false)
    {
        var first = sizeColumn ? 1 : 0;
        var columns = Enumerable.Range(first, reader.FieldCount - first)
            .Select(i => new ExecutionColumn(reader.GetName(i), reader.GetDataTypeName(i))).ToList();
        var rows = new List<object?[]>();
        var truncated = false;
        while (await reader.ReadAsync(ct))
        {
            if (rows.Count >= remaining) { truncated = true; break; }
            if (sizeColumn && !budget.Fits(reader.IsDBNull(0) ? 0 : reader.GetInt32(0))) { truncated = true; break; }
            var row = new object?[reader.FieldCount - first];
            for (var i = 0; i < row.Length; i++) row[i] = ReadValue(reader, i + first);
            if (!budget.TryAdd(row)) { truncated = true; break; }
            rows.Add(row);
        }
        return (new ExecutionResultSet(columns, rows), truncated);
    }

    private static object? ReadValue(NpgsqlDataReader reader, int ordinal)
    {
        if (reader.IsDBNull(ordinal)) return null;
        var typeName = reader.GetDataTypeName(ordinal);
        if (typeName is "json" or "jsonb") return JsonDocument.Parse(reader.GetString(ordinal)).RootElement.Clone();
        if (typeName == "numeric")
        {
            // Read once (a sequential reader cannot read a column twice), in PostgreSQL's own binary form: a decimal
            // when it fits, else its exact digits.
            byte[] raw;
            using (var stream = reader.GetStream(ordinal))
            using (var copy = new MemoryStream())
            {
                stream.CopyTo(copy);
                raw = copy.ToArray();
            }
            var text = NumericText(raw);
            return decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) ? number : text;
        }
        try
        {
            return ResultValues.Normalize(reader.GetValue(ordinal));
        }
        catch (Exception e) when (e is InvalidCastException or NotSupportedException or OverflowException or ArgumentException)
        {
            // Types without a .NET mapping, or values out of its range (numeric beyond decimal): whatever form reads.
            return Fallback(reader, ordinal);
        }
    }

    /// <summary>
    /// A numeric in PostgreSQL's binary form (ndigits, weight, sign, dscale, then base-10000 digits) as its exact text.
    /// </summary>
    internal static string NumericText(byte[] raw)
    {
        static int Int16At(byte[] b, int at) => (short)((b[at] << 8) | b[at + 1]);
        var count = Int16At(raw, 0);
        var weight = Int16At(raw, 2);
        var sign = (raw[4] << 8) | raw[5];
        var scale = Int16At(raw, 6);
        switch (sign)
        {
            case 0xC000: return "NaN";
            case 0xD000: return "Infinity";
            case 0xF000: return "-Infinity";
        }
        var digits = new int[count];
        for (var i = 0; i < count; i++) digits[i] = Int16At(raw, 8 + 2 * i);
        var text = new System.Text.StringBuilder();
        if (sign == 0x4000) text.Append('-');
        if (weight < 0) text.Append('0');
        for (var w = 0; w <= weight; w++)
        {
            var digit = w < count ? digits[w] : 0;
            text.Append(w == 0 ? digit.ToString(CultureInfo.InvariantCulture) : digit.ToString("D4", CultureInfo.InvariantCulture));
        }
        if (scale > 0)
        {
            var fraction = new System.Text.StringBuilder();
            for (var i = weight + 1; fraction.Length < scale; i++)
            {
                fraction.Append((i >= 0 && i < count ? digits[i] : 0).ToString("D4", CultureInfo.InvariantCulture));
            }
            text.Append('.').Append(fraction.ToString(0, scale));
        }
        return text.ToString();
    }

    /// <summary>A value GetValue cannot give: its text, else a wider number, else a note; a result never fails the call.</summary>
    private static object? Fallback(NpgsqlDataReader reader, int ordinal)
    {
        // InvalidOperationException: a sequential reader refuses a column already consumed by the failed attempt.
        try { return reader.GetFieldValue<string>(ordinal); }
        catch (Exception e) when (e is InvalidCastException or NotSupportedException or InvalidOperationException) { }
        try { return reader.GetFieldValue<System.Numerics.BigInteger>(ordinal).ToString(CultureInfo.InvariantCulture); }
        catch (Exception e) when (e is InvalidCastException or NotSupportedException or OverflowException or ArgumentException
            or InvalidOperationException) { }
        try { return reader.GetDouble(ordinal); }
        catch (Exception e) when (e is InvalidCastException or NotSupportedException or OverflowException or ArgumentException
            or InvalidOperationException) { }
        return $"(a value of type {reader.GetDataTypeName(ordinal)} that cannot be shown)";
    }
}
