using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using TcStudio.Api.Activities;
using TcStudio.Api.Workspaces;
using TcStudio.SystemDatabase.Activities;

namespace TcStudio.Api.Events;

public static class EventsApi
{
    public const string LastEventIdHeader = "Last-Event-ID";

    public static RouteGroupBuilder MapEventsApi(this RouteGroupBuilder api)
    {
        var workspace = api.MapWorkspaceScope().WithTags("Events");
        workspace.MapGet("/events", StreamEvents).RequireWorkspacePermission(WorkspacePermission.Read)
            .Produces<ActivityResponse>(StatusCodes.Status200OK, ActivityEventStream.ContentType)
            .WithSummary("The workspace's activity as Server-Sent Events: live, in commit-safe order, resumable with Last-Event-ID.");
        return api;
    }

    /// <param name="lastEventIdHeader">Where to resume: the id of the last event received (browsers' EventSource sends it on reconnect).</param>
    /// <param name="lastEventId">The same as a query parameter, for clients that cannot set headers; the header wins.</param>
    public static async Task<Results<ActivityEventStream, ValidationProblem>> StreamEvents(
        [FromHeader(Name = LastEventIdHeader)] string? lastEventIdHeader, [FromQuery] string? lastEventId,
        CurrentWorkspace workspace, ActivityStreamDatabase database, WorkspaceActivityFeeds feeds, HttpContext http)
    {
        var (field, text) = !string.IsNullOrEmpty(lastEventIdHeader) ? (LastEventIdHeader, lastEventIdHeader) : ("lastEventId", lastEventId);
        ActivityStreamPosition? resume = null;
        if (!string.IsNullOrEmpty(text))
        {
            if (!ActivityStreamPosition.TryDecode(text, out var position))
            {
                return new FieldErrors().Add(field, $"'{field}' is not an event id this stream sent.").ToProblem();
            }
            resume = position;
        }

        if (resume is null && feeds.TryGetLiveHead(workspace.Id, out var head))
        {
            return new ActivityEventStream(workspace.Access, head);
        }

        // Every position the stream hands out lies at or below the primary's current horizon; one beyond it was not
        // ours (or belongs to another database, e.g. before a restore): refuse it rather than wait for it forever.
        var horizon = await database.ReadPrimaryHorizonAsync(http.RequestAborted);
        if (resume is { } asked && asked.TransactionId > horizon)
        {
            return new FieldErrors().Add(field, $"'{field}' is not an event id this stream sent; reconnect without it and reload the activity log.")
                .ToProblem();
        }
        return new ActivityEventStream(workspace.Access, resume ?? ActivityStreamPosition.Before(horizon));
    }
}

public static class EventsSetup
{
    /// <summary>The live activity stream: its options, the primary-only database access, the fan-out and the listener.</summary>
    public static WebApplicationBuilder AddActivityEvents(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ActivityStreamOptions>().BindConfiguration(ActivityStreamOptions.SectionName).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<ActivityStreamOptions>, ActivityStreamOptionsValidator>();
        builder.Services.AddSingleton<ActivityStreamDatabase>();
        // The activity log's pages (GET …/activities) bound their query by the span of monthly partitions.
        builder.Services.AddSingleton<Activities.ActivityMonthSpanCache>();
        builder.Services.AddSingleton<StreamEventFormatter>();
        builder.Services.AddSingleton<WorkspaceActivityFeeds>();
        builder.Services.AddSingleton<StreamAccess>();
        builder.Services.AddSingleton<EventStreamMetrics>();
        builder.Services.AddSingleton<ActivityNotificationListener>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ActivityNotificationListener>());
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(EventStreamMetrics.MeterName));
        return builder;
    }
}
