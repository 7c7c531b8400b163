using Conveyor.Backends;

namespace Conveyor.Testing;

// What tests read and the inline runner uses, beside the backend roles: synchronous, since nothing here waits.
public sealed partial class InMemoryBackend
{
    /// <summary>Every task stored, in enqueue order, as it is now: what tests assert on
    /// (see <see cref="EnqueuedTaskAssertions"/>).</summary>
    public IReadOnlyList<TaskRecord> GetTasks()
    {
        lock (_storage.Gate)
        {
            return _storage.BySeq.Select(t => t.ToRecord()).ToList();
        }
    }

    /// <summary>Whether task <paramref name="taskId"/> is leased and its handler's start was recorded
    /// (<see cref="IQueueBackend.StartAsync"/>): from then on, a lease that ends without an outcome spends the attempt.</summary>
    public bool IsAttemptStarted(Guid taskId)
    {
        lock (_storage.Gate)
        {
            return _storage.Tasks.TryGetValue(taskId, out var task) && task.State == TaskState.Running && task.LeaseStarted;
        }
    }

    /// <summary>Queued tasks of unpaused queues in the order one fetch over every queue would take them (priority,
    /// then enqueue order), as far as <paramref name="canRun"/> lets them.</summary>
    internal List<Guid> ReadyTasks(Func<TaskMessage, bool> canRun)
    {
        lock (_storage.Gate)
        {
            return _storage.Queues.Values.Where(q => !q.Paused).SelectMany(q => q.Ready)
                .Where(t => canRun(t.Message))
                .OrderByDescending(t => t.Message.Priority).ThenBy(t => t.Seq)
                .Select(t => t.Message.Id).ToList();
        }
    }

    /// <summary>Leases task <paramref name="taskId"/> when it is queued in an unpaused queue, or waits for a time that
    /// has come (then it is promoted first, as the scheduler would); null otherwise.</summary>
    internal Lease? TryLease(Guid taskId, string workerId, TimeSpan duration)
    {
        lock (_storage.Gate)
        {
            if (!_storage.Tasks.TryGetValue(taskId, out var task) || _storage.Queue(task.Message.Queue).Paused)
            {
                return null;
            }
            var now = Now();
            if (task.State is TaskState.Scheduled or TaskState.Retrying && task.NotBefore <= now)
            {
                _storage.Transition(task, TaskState.Queued, now);
            }
            return task.State == TaskState.Queued ? Lease(task, workerId, duration, now) : null;
        }
    }
}
