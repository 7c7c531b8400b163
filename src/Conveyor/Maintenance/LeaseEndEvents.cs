using Conveyor.Backends;

namespace Conveyor;

/// <summary>
/// Raises the task events of tasks that a sweep of leases, or a hand-back by id, ended for good
/// (<see cref="LeaseSweep.Ended"/>: dead after their last interrupted attempt, or cancelled): no worker raises them, as the
/// worker that held the lease is gone or handed it back. A step's event carries its workflow, so that the workflow's end
/// is looked for and announced too. Off every worker's path: it reads each ended task once for its name, queue and step.
/// Two ways, by who swept:
/// <list type="bullet">
/// <item><see cref="PublishAsync"/>: the leader's reaper, or a running worker's hand-back by id, in a long-lived process,
/// raises them on its own bus (only while something receives events), whose bridge carries them to the other processes,
/// and whose <see cref="Workflows.WorkflowEndProbe"/> announces the workflow's end.</item>
/// <item><see cref="AnnounceAsync"/>: a hand-back in a process that is about to end, or that has no bus (a supervisor,
/// its hand-back process, a worker as it exits), sends them straight to the other processes
/// (<see cref="EventAnnouncement"/>).</item>
/// </list>
/// </summary>
internal static class LeaseEndEvents
{
    /// <summary>Reads each ended task and raises its event on <paramref name="bus"/>; a task deleted meanwhile is skipped.</summary>
    public static async Task PublishAsync(ITaskStore store, TaskEventBus bus, LeaseSweep sweep, string? origin, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        if (sweep.Ended.Count == 0 || !bus.IsObserved)
        {
            return;
        }
        foreach (var taskEvent in await ReadAsync(store, sweep, origin, now, cancellationToken).ConfigureAwait(false))
        {
            bus.Publish(taskEvent);
        }
    }

    /// <summary>Reads each ended task and sends its event, and its workflow's end, to every other process on the backend
    /// (<see cref="EventAnnouncement"/>), with <paramref name="origin"/> (the worker whose leases ended) as their origin.
    /// Returns how many events were sent. Throws when the store or the notifier fails.</summary>
    public static async Task<int> AnnounceAsync(IConveyorBackend backend, LeaseSweep sweep, string origin, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (sweep.Ended.Count == 0)
        {
            return 0;
        }
        var events = await ReadAsync(backend.Store, sweep, origin, now, cancellationToken).ConfigureAwait(false);
        await EventAnnouncement.PublishAsync(backend, events, origin, cancellationToken).ConfigureAwait(false);
        return events.Count;
    }

    /// <summary>The events of the tasks <paramref name="sweep"/> ended for good, read from <paramref name="store"/>; a task
    /// deleted meanwhile is left out.</summary>
    internal static async Task<List<TaskEvent>> ReadAsync(ITaskStore store, LeaseSweep sweep, string? origin, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        var events = new List<TaskEvent>(sweep.Ended.Count);
        foreach (var ended in sweep.Ended)
        {
            var record = await store.GetAsync(ended.TaskId, cancellationToken).ConfigureAwait(false);
            if (record is null)
            {
                continue;
            }
            var (workflowId, stepId) = Workflows.WorkflowHeaders.StepOf(record.Headers);
            var dead = ended.State == TaskState.Dead;
            events.Add(new TaskEvent
            {
                WorkflowId = workflowId,
                StepId = stepId,
                Kind = dead ? TaskEventKind.Dead : TaskEventKind.Cancelled,
                State = ended.State,
                TaskId = ended.TaskId,
                Task = record.Task,
                Queue = record.Queue,
                Attempt = record.Attempts,
                At = record.FinishedAt ?? now,
                Error = dead ? LeaseRules.InterruptedError : null,
                Origin = origin,
            });
        }
        return events;
    }
}
