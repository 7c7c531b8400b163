using Conveyor.Backends;

namespace Conveyor;

/// <summary>
/// Raises the task events of tasks that a sweep of leases ended for good (<see cref="LeaseSweep.Ended"/>: dead after their
/// last interrupted attempt, or cancelled): no worker raises them, as the worker that held the lease is gone. A step's
/// event carries its workflow, so the bus's <see cref="TaskEventBus.StepEnded"/> has the workflow's end looked for
/// (<see cref="Workflows.WorkflowEndProbe"/>) and announced. Off every worker's path: only the leader's reaper calls it, and
/// only while something receives events; it reads each ended task once for its name, queue and step.
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
        foreach (var ended in sweep.Ended)
        {
            var record = await store.GetAsync(ended.TaskId, cancellationToken).ConfigureAwait(false);
            if (record is null)
            {
                continue;
            }
            var (workflowId, stepId) = Workflows.WorkflowHeaders.StepOf(record.Headers);
            var dead = ended.State == TaskState.Dead;
            bus.Publish(new TaskEvent
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
    }
}
