using Conveyor.Backends;

namespace Conveyor.AspNetCore;

/// <summary>Tasks of one name in one queue that wait while no live worker declares their name.</summary>
/// <param name="Task">Task name.</param>
/// <param name="Queue">Queue.</param>
/// <param name="Count">Tasks in all (scheduled, queued, retrying and pending).</param>
/// <param name="States">How many in each of those states, by API state name; states with none are left out.</param>
public sealed record TaskWaitingForHandler(string Task, string Queue, long Count, IReadOnlyDictionary<string, long> States);

/// <summary><c>GET /api/v1/tasks/waiting-for-handler</c>, and the section of <c>conveyor info</c>.</summary>
/// <param name="Tasks">Per task name and queue, the most first.</param>
/// <param name="Complete">False when the store counted only the first
/// <see cref="ITaskStore.MaxWaitingCounted"/> waiting tasks (Redis): the counts are then lower bounds.</param>
public sealed record WaitingForHandlerResource(IReadOnlyList<TaskWaitingForHandler> Tasks, bool Complete);

/// <summary>
/// The waiting tasks whose name no live worker declares in its heartbeat (<see cref="WorkerInfo.Tasks"/>): they are not
/// lost or dead-lettered (a worker that takes one puts it back without spending an attempt), but nothing will run them
/// until a worker that has their handler starts. The API and the CLI agree on it.
/// </summary>
public static class WaitingForHandler
{
    /// <summary>Counts them from <paramref name="backend"/>'s store and its live workers at <paramref name="now"/>.</summary>
    public static async Task<WaitingForHandlerResource> ReadAsync(IConveyorBackend backend, WorkerOptions worker, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var workers = await WorkerListing.ListAsync(backend.Coordination, worker, now, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(backend, workers, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>As above, with the workers already listed (<see cref="WorkerListing.ListAsync"/>).</summary>
    public static async Task<WaitingForHandlerResource> ReadAsync(IConveyorBackend backend, IReadOnlyList<WorkerInfo> workers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(workers);
        var declared = workers.Where(w => w.Alive == true).SelectMany(w => w.Tasks).ToHashSet(StringComparer.Ordinal);
        var waiting = await backend.Store.CountWaitingByTaskAsync(cancellationToken).ConfigureAwait(false);
        var tasks = waiting.Counts
            .Where(c => c.Count > 0 && !declared.Contains(c.Task))
            .GroupBy(c => (c.Task, c.Queue))
            .Select(g => new TaskWaitingForHandler(g.Key.Task, g.Key.Queue, g.Sum(c => c.Count),
                g.OrderBy(c => c.State).ToDictionary(c => c.State.ToApiName(), c => c.Count, StringComparer.Ordinal)))
            .OrderByDescending(t => t.Count).ThenBy(t => t.Task, StringComparer.Ordinal).ThenBy(t => t.Queue, StringComparer.Ordinal)
            .ToList();
        return new WaitingForHandlerResource(tasks, waiting.Complete);
    }
}
