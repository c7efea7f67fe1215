namespace TcStudio.Tests.Observability.Support;

/// <summary>A span as an OTLP collector received it: enough to check names, scopes and parentage.</summary>
public sealed record ExportedSpan(
    string ServiceName, string Scope, string Name, string TraceId, string SpanId, string ParentSpanId, int Kind,
    string ServiceInstanceId = "", IReadOnlyDictionary<string, string>? Attributes = null, string Text = "")
{
    public const int ServerKind = 2;
    public const int ClientKind = 3;
}

/// <summary>A log record as an OTLP collector received it: its attributes and its raw text (to search).</summary>
public sealed record ExportedLogRecord(IReadOnlyDictionary<string, string> Attributes, string Text);

/// <summary>
/// Reads the few fields of an OTLP ExportTraceServiceRequest (protobuf wire format) that the tests need, by hand:
/// ExportTraceServiceRequest.resource_spans(1) → ResourceSpans{resource(1){attributes(1)}, scope_spans(2)} →
/// ScopeSpans{scope(1){name(1)}, spans(2)} → Span{trace_id(1), span_id(2), parent_span_id(4), name(5), kind(6)}.
/// </summary>
public static class OtlpTraceDecoder
{
    public static IEnumerable<ExportedSpan> Decode(byte[] request)
    {
        foreach (var resourceSpans in Fields(request).Where(f => f.Number == 1))
        {
            var serviceName = "";
            var serviceInstanceId = "";
            foreach (var resource in Fields(resourceSpans.Bytes).Where(f => f.Number == 1))
            {
                foreach (var attribute in Fields(resource.Bytes).Where(f => f.Number == 1))
                {
                    var (key, value) = ReadKeyValue(attribute.Bytes);
                    if (key == "service.name") serviceName = value ?? "";
                    if (key == "service.instance.id") serviceInstanceId = value ?? "";
                }
            }
            foreach (var scopeSpans in Fields(resourceSpans.Bytes).Where(f => f.Number == 2))
            {
                var scope = "";
                foreach (var scopeField in Fields(scopeSpans.Bytes).Where(f => f.Number == 1))
                {
                    scope = Fields(scopeField.Bytes).Where(f => f.Number == 1).Select(f => Utf8(f.Bytes)).FirstOrDefault() ?? "";
                }
                foreach (var span in Fields(scopeSpans.Bytes).Where(f => f.Number == 2))
                {
                    string traceId = "", spanId = "", parentId = "", name = "";
                    var kind = 0;
                    var attributes = new Dictionary<string, string>();
                    foreach (var field in Fields(span.Bytes))
                    {
                        switch (field.Number)
                        {
                            case 1: traceId = Convert.ToHexString(field.Bytes.Span); break;
                            case 2: spanId = Convert.ToHexString(field.Bytes.Span); break;
                            case 4: parentId = Convert.ToHexString(field.Bytes.Span); break;
                            case 5: name = Utf8(field.Bytes); break;
                            case 6: kind = (int)field.Varint; break;
                            case 9:
                                var (key, value) = ReadKeyValue(field.Bytes);
                                attributes[key] = value ?? "";
                                break;
                        }
                    }
                    yield return new ExportedSpan(serviceName, scope, name, traceId, spanId, parentId, kind, serviceInstanceId,
                        attributes, Utf8(span.Bytes));
                }
            }
        }
    }

    /// <summary>
    /// The log records of an OTLP ExportLogsServiceRequest, each with its attributes and its raw text:
    /// resource_logs(1) → ResourceLogs{scope_logs(2)} → ScopeLogs{log_records(2)} → LogRecord{attributes(6)}.
    /// </summary>
    public static IEnumerable<ExportedLogRecord> DecodeLogs(byte[] request) =>
        from resourceLogs in Fields(request).Where(f => f.Number == 1)
        from scopeLogs in Fields(resourceLogs.Bytes).Where(f => f.Number == 2)
        from record in Fields(scopeLogs.Bytes).Where(f => f.Number == 2)
        select new ExportedLogRecord(Fields(record.Bytes).Where(f => f.Number == 6).Select(f => ReadKeyValue(f.Bytes))
            .GroupBy(a => a.Key).ToDictionary(g => g.Key, g => g.Last().Value ?? ""), Utf8(record.Bytes));

    private static (string Key, string? Value) ReadKeyValue(ReadOnlyMemory<byte> keyValue)
    {
        var key = "";
        string? value = null;
        foreach (var field in Fields(keyValue))
        {
            if (field.Number == 1) key = Utf8(field.Bytes);
            // AnyValue.string_value is field 1, int_value field 3.
            if (field.Number == 2)
            {
                value = Fields(field.Bytes).Where(f => f.Number is 1 or 3)
                    .Select(f => f.Number == 1 ? Utf8(f.Bytes) : ((long)f.Varint).ToString(System.Globalization.CultureInfo.InvariantCulture))
                    .FirstOrDefault();
            }
        }
        return (key, value);
    }

    private readonly record struct Field(int Number, ulong Varint, ReadOnlyMemory<byte> Bytes);

    private static List<Field> Fields(ReadOnlyMemory<byte> message)
    {
        var fields = new List<Field>();
        var span = message.Span;
        var position = 0;
        while (position < span.Length)
        {
            var tag = ReadVarint(span, ref position);
            var number = (int)(tag >> 3);
            switch ((int)(tag & 7))
            {
                case 0:
                    fields.Add(new Field(number, ReadVarint(span, ref position), ReadOnlyMemory<byte>.Empty));
                    break;
                case 1:
                    fields.Add(new Field(number, 0, message.Slice(position, 8)));
                    position += 8;
                    break;
                case 2:
                    var length = (int)ReadVarint(span, ref position);
                    fields.Add(new Field(number, 0, message.Slice(position, length)));
                    position += length;
                    break;
                case 5:
                    fields.Add(new Field(number, 0, message.Slice(position, 4)));
                    position += 4;
                    break;
                default:
                    throw new FormatException($"Unsupported protobuf wire type in tag {tag} at {position}.");
            }
        }
        return fields;
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> span, ref int position)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = span[position++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return value;
        }
    }

    private static string Utf8(ReadOnlyMemory<byte> bytes) => System.Text.Encoding.UTF8.GetString(bytes.Span);
}
