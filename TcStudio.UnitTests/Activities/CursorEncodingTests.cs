using TcStudio.Api.Activities;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.UnitTests.Activities;

/// <summary>The opaque tokens callers hand back: the activity page cursor and the event stream's position.</summary>
public sealed class CursorEncodingTests
{
    private static readonly Guid Id = Guid.Parse("0192f4a1-7c3b-7d2e-8f00-0123456789ab");

    [Fact]
    public void An_activity_cursor_round_trips_to_the_tick_and_is_url_safe()
    {
        var cursor = new ActivityCursor(new DateTimeOffset(2026, 11, 30, 7, 15, 42, 123, TimeSpan.Zero).AddTicks(4567), Id);

        var text = cursor.Encode();

        Assert.Matches("^[A-Za-z0-9_-]+$", text);
        Assert.True(ActivityCursor.TryDecode(text, out var decoded));
        Assert.Equal(cursor, decoded);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not a cursor")]
    [InlineData("AA")]
    public void Text_that_is_not_a_cursor_is_refused(string text) =>
        Assert.False(ActivityCursor.TryDecode(text, out _));

    [Fact]
    public void Bytes_this_api_did_not_write_are_refused()
    {
        var written = System.Buffers.Text.Base64Url.DecodeFromChars(new ActivityCursor(DateTimeOffset.UnixEpoch, Id).Encode());
        Assert.Equal(25, written.Length); // format byte, ticks, id

        var otherFormat = (byte[])written.Clone();
        otherFormat[0] = 2;
        var oneByteMore = written.Append((byte)0).ToArray();
        var ticksOutOfRange = (byte[])written.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(ticksOutOfRange.AsSpan(1), long.MaxValue);

        foreach (var bytes in new[] { otherFormat, oneByteMore, written[..24], ticksOutOfRange })
        {
            Assert.False(ActivityCursor.TryDecode(System.Buffers.Text.Base64Url.EncodeToString(bytes), out _));
        }
    }

    [Fact]
    public void A_cursor_longer_than_64_characters_is_refused_before_decoding() =>
        Assert.False(ActivityCursor.TryDecode(new string('A', 65), out _));

    [Fact]
    public void A_stream_position_round_trips_and_orders_as_postgresql_orders_xid8_then_uuid()
    {
        var position = new ActivityStreamPosition(ulong.MaxValue - 1, Id);
        Assert.True(ActivityStreamPosition.TryDecode(position.Encode(), out var decoded));
        Assert.Equal(position, decoded);

        // uuids compare as big-endian bytes (PostgreSQL's order), not as .NET's Guid.CompareTo does.
        var low = new ActivityStreamPosition(7, Guid.Parse("00000000-0000-0000-0000-0000000000ff"));
        var high = new ActivityStreamPosition(7, Guid.Parse("01000000-0000-0000-0000-000000000000"));
        Assert.True(low < high);
        Assert.True(new ActivityStreamPosition(6, Guid.Parse("ffffffff-ffff-ffff-ffff-ffffffffffff")) < low);
        Assert.True(ActivityStreamPosition.Before(7) < low);
        Assert.Equal(high, ActivityStreamPosition.Max(low, high));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("AAAA")]
    [InlineData("not-a-position!")]
    public void Anything_but_a_position_the_stream_sent_is_refused(string? text) =>
        Assert.False(ActivityStreamPosition.TryDecode(text, out _));
}
