using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using TcStudio.Api.Activities;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.Api.Events;

/// <summary>One activity ready to send: its position and its whole SSE frame, formatted once for every stream.</summary>
/// <param name="ChangesAccessOf">
/// Whose access to the workspace this activity may change: a member's user id (member.*), <see cref="Guid.Empty"/> for
/// everyone (workspace.deleted), or null. The streams concerned re-check their caller before sending it.
/// </param>
public sealed record StreamEvent(ActivityStreamPosition Position, byte[] Frame, DateTimeOffset CreatedAt, Guid? ChangesAccessOf)
{
    public bool ChangesAccessFor(Guid userId) => ChangesAccessOf is { } who && (who == Guid.Empty || who == userId);
}

/// <summary>
/// Formats activities as SSE frames: <c>id:</c> the position (the resume cursor), <c>data:</c> the activity in the
/// activity log's item shape (<see cref="ActivityResponse"/>), with the API's JSON settings. Compact JSON never holds
/// a line break (those inside strings are escaped), so one <c>data:</c> line carries it.
/// </summary>
public sealed class StreamEventFormatter(IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json)
{
    private readonly JsonSerializerOptions _json = json.Value.SerializerOptions;

    public StreamEvent Format(ActivityStreamRow row)
    {
        JsonElement? details = null;
        if (row.DetailsJson is not null)
        {
            using var document = JsonDocument.Parse(row.DetailsJson);
            details = document.RootElement.Clone();
        }
        var item = new ActivityResponse(row.Id, row.Action, row.EntityType, row.EntityId, row.Username, details, row.CreatedAt);
        var frame = $"id: {row.Position.Encode()}\ndata: {JsonSerializer.Serialize(item, _json)}\n\n";
        return new StreamEvent(row.Position, Encoding.UTF8.GetBytes(frame), row.CreatedAt, ChangesAccessOf(row));
    }

    /// <summary>Member activities name the member's user as their entity; a workspace's deletion concerns everyone.</summary>
    private static Guid? ChangesAccessOf(ActivityStreamRow row) => row.EntityType switch
    {
        EntityTypes.Member => row.EntityId ?? Guid.Empty,
        EntityTypes.Workspace when row.Action != "workspace.updated" => Guid.Empty,
        _ => null,
    };

    /// <summary>The first frame of every stream: where it starts (also a valid Last-Event-ID).</summary>
    public static byte[] Ready(ActivityStreamPosition start) =>
        Encoding.UTF8.GetBytes($"event: ready\nid: {start.Encode()}\ndata: {{\"position\":\"{start.Encode()}\"}}\n\n");

    public static readonly byte[] Heartbeat = Encoding.UTF8.GetBytes(": heartbeat\n\n");

    /// <summary>The last frame of a stream the server ends; the reason is one of <see cref="EndReasons"/>.</summary>
    public static byte[] End(string reason) => Encoding.UTF8.GetBytes($"event: end\ndata: {{\"reason\":\"{reason}\"}}\n\n");
}

/// <summary>Why the server ended a stream (the <c>end</c> event's reason).</summary>
public static class EndReasons
{
    /// <summary>The caller may no longer read the workspace (removed, token revoked, workspace deleted): do not reconnect.</summary>
    public const string AccessRevoked = "access-revoked";

    /// <summary>The bearer token expired: reconnect with a new one and Last-Event-ID.</summary>
    public const string TokenExpired = "token-expired";

    /// <summary>This instance is stopping, or could not check access: reconnect with Last-Event-ID.</summary>
    public const string Shutdown = "shutdown";
    public const string Unavailable = "unavailable";
}
