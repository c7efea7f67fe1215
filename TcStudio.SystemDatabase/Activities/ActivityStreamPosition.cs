using System.Buffers.Binary;
using System.Buffers.Text;

namespace TcStudio.SystemDatabase.Activities;

/// <summary>
/// A place in a workspace's live activity stream: the rows are ordered by (inserting transaction id, id), and a
/// position means "every row up to and including this one". <see cref="Before"/> positions (id all zeros, which no row
/// has) mean "every row of a transaction older than this one". Opaque to clients: base64url of a format byte, the
/// 64-bit transaction id and the id, sent as the SSE event id and taken back as Last-Event-ID.
/// </summary>
public readonly record struct ActivityStreamPosition(ulong TransactionId, Guid Id) : IComparable<ActivityStreamPosition>
{
    private const byte Format = 1;
    private const int ByteLength = 1 + sizeof(ulong) + 16;

    /// <summary>Just before every row written by transaction <paramref name="transactionId"/> or a later one.</summary>
    public static ActivityStreamPosition Before(ulong transactionId) => new(transactionId, Guid.Empty);

    /// <summary>The same order as PostgreSQL's (xid8, uuid) comparison: uuids compare as big-endian bytes.</summary>
    public int CompareTo(ActivityStreamPosition other)
    {
        var byTransaction = TransactionId.CompareTo(other.TransactionId);
        if (byTransaction != 0) return byTransaction;
        Span<byte> mine = stackalloc byte[16];
        Span<byte> theirs = stackalloc byte[16];
        Id.TryWriteBytes(mine, bigEndian: true, out _);
        other.Id.TryWriteBytes(theirs, bigEndian: true, out _);
        return mine.SequenceCompareTo(theirs);
    }

    public static bool operator <(ActivityStreamPosition a, ActivityStreamPosition b) => a.CompareTo(b) < 0;
    public static bool operator >(ActivityStreamPosition a, ActivityStreamPosition b) => a.CompareTo(b) > 0;
    public static bool operator <=(ActivityStreamPosition a, ActivityStreamPosition b) => a.CompareTo(b) <= 0;
    public static bool operator >=(ActivityStreamPosition a, ActivityStreamPosition b) => a.CompareTo(b) >= 0;

    public static ActivityStreamPosition Max(ActivityStreamPosition a, ActivityStreamPosition b) => a >= b ? a : b;

    public string Encode()
    {
        Span<byte> bytes = stackalloc byte[ByteLength];
        bytes[0] = Format;
        BinaryPrimitives.WriteUInt64BigEndian(bytes[1..], TransactionId);
        Id.TryWriteBytes(bytes[9..], bigEndian: true, out _);
        return Base64Url.EncodeToString(bytes);
    }

    public static bool TryDecode(string? text, out ActivityStreamPosition position)
    {
        position = default;
        if (text is null || text.Length is 0 or > 64) return false;
        Span<byte> bytes = stackalloc byte[48];
        if (!Base64Url.IsValid(text) || Base64Url.GetMaxDecodedLength(text.Length) > bytes.Length) return false;
        if (Base64Url.DecodeFromChars(text, bytes, out _, out var written) != System.Buffers.OperationStatus.Done
            || written != ByteLength || bytes[0] != Format)
        {
            return false;
        }
        position = new ActivityStreamPosition(BinaryPrimitives.ReadUInt64BigEndian(bytes[1..]), new Guid(bytes[9..ByteLength], bigEndian: true));
        return true;
    }

    public override string ToString() => $"({TransactionId}, {Id})";
}
