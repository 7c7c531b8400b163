using System.Buffers;
using System.Text;
using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor;

/// <summary>
/// Sends task events, and the ends of the workflows they end, straight onto the notifier's event channels
/// (<see cref="NotifierChannels.Events"/>, <see cref="NotifierChannels.WorkflowEvents"/>), from which every other process's
/// <see cref="TaskEventBridge"/> passes them to its subscribers that want other processes' events (the event stream, the
/// dashboard, <c>SubscribeWorkflows(…, includeRemote: true)</c>). It is for the ends of tasks that no running worker
/// raises, made by a process that is about to end or runs no bridge: the hand-back of a gone worker's leases (a
/// supervisor's, or its short-lived hand-back process), a worker's own hand-back as it exits (the end of its drain, a
/// second stop signal, a hard time limit). The bridge would not do there: it sends only after hearing that someone
/// wants events, from a queue that the end of the process drops. Here each batch is on its way before this returns,
/// whoever listens: these events are few (tasks ended for good by the end of a lease, attempts cut by a hard limit).
/// </summary>
/// <remarks>The events carry the origin given to <see cref="PublishAsync"/>; a bridge drops events of its own origin, so that
/// the process that sent them does not receive them again. A workflow end is read here as
/// <see cref="Workflows.WorkflowEndProbe"/> reads it, with its stored end time, so that a subscriber that hears it from
/// another process too sees it once.</remarks>
internal static class EventAnnouncement
{
    /// <summary>Sends <paramref name="events"/> (their origin should be <paramref name="origin"/>), then the end of every
    /// workflow that one of them ended. Throws when the notifier or the store fails.</summary>
    public static async Task PublishAsync(IConveyorBackend backend, IReadOnlyList<TaskEvent> events, string origin, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(events);
        if (events.Count == 0)
        {
            return;
        }
        var limit = backend.Capabilities.MaxNotificationPayload;
        await SendAsync(backend.Notifier, NotifierChannels.Events, events, TaskEventJson.Write, limit, cancellationToken).ConfigureAwait(false);
        if (backend.Workflows is not { } workflows)
        {
            return;
        }
        var ended = events
            .Where(e => e.Kind is TaskEventKind.Succeeded or TaskEventKind.Dead or TaskEventKind.Cancelled or TaskEventKind.Expired)
            .Select(e => e.WorkflowId)
            .OfType<Guid>()
            .Distinct()
            .ToList();
        var ends = new List<WorkflowEvent>();
        foreach (var workflowId in ended)
        {
            var summary = await workflows.GetWorkflowSummaryAsync(workflowId, cancellationToken).ConfigureAwait(false);
            if (summary is { State: WorkflowState.Succeeded or WorkflowState.Failed, FinishedAt: { } finishedAt })
            {
                ends.Add(new WorkflowEvent
                {
                    Kind = summary.State == WorkflowState.Succeeded ? WorkflowEventKind.Succeeded : WorkflowEventKind.Failed,
                    WorkflowId = workflowId,
                    Name = summary.Name,
                    State = summary.State,
                    At = finishedAt,
                    Origin = origin,
                });
            }
        }
        await SendAsync(backend.Notifier, NotifierChannels.WorkflowEvents, ends, WorkflowEventKinds.Write, limit, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends <paramref name="items"/> as JSON arrays that each fit <paramref name="limit"/> bytes, as the bridge
    /// batches them; an item longer than a notification can carry is left out, as the bridge leaves it out.</summary>
    internal static async Task SendAsync<TEvent>(INotifier notifier, string channel, IReadOnlyList<TEvent> items, Action<Utf8JsonWriter, TEvent> write,
        int limit, CancellationToken cancellationToken)
    {
        var batch = new ArrayBufferWriter<byte>(Math.Min(limit, 64 * 1024));
        var one = new ArrayBufferWriter<byte>(512);
        var count = 0;
        foreach (var item in items)
        {
            one.ResetWrittenCount();
            using (var writer = new Utf8JsonWriter(one))
            {
                write(writer, item);
            }
            if (one.WrittenCount + 2 > limit)
            {
                continue;
            }
            // "[" + items joined by "," + "]": send first when this one would not fit.
            if (count > 0 && batch.WrittenCount + 1 + one.WrittenCount + 1 > limit)
            {
                await FlushAsync().ConfigureAwait(false);
            }
            batch.Write(count == 0 ? "["u8 : ","u8);
            batch.Write(one.WrittenSpan);
            count++;
        }
        if (count > 0)
        {
            await FlushAsync().ConfigureAwait(false);
        }

        async Task FlushAsync()
        {
            batch.Write("]"u8);
            await notifier.PublishAsync(channel, Encoding.UTF8.GetString(batch.WrittenSpan), cancellationToken).ConfigureAwait(false);
            batch.ResetWrittenCount();
            count = 0;
        }
    }
}
