using System.Globalization;
using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend
{
    /// <inheritdoc />
    public Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Tasks.TryGetValue(taskId, out var task) ? task.ToRecord() : null);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyDictionary<Guid, TaskState>> GetStatesAsync(IReadOnlyCollection<Guid> taskIds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        cancellationToken.ThrowIfCancellationRequested();
        var states = new Dictionary<Guid, TaskState>(taskIds.Count);
        lock (_storage.Gate)
        {
            foreach (var id in taskIds)
            {
                if (_storage.Tasks.TryGetValue(id, out var task))
                {
                    states[id] = task.State;
                }
            }
        }
        return Task.FromResult<IReadOnlyDictionary<Guid, TaskState>>(states);
    }

    /// <summary>Tasks matching a filter, newest first; the cursor is the enqueue sequence of the last task of the page.</summary>
    public Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        cancellationToken.ThrowIfCancellationRequested();
        var limit = Math.Clamp(query.Limit, 1, 1000);
        var before = long.MaxValue;
        if (query.Cursor is { } cursor && !long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out before))
        {
            throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
        }
        var items = new List<TaskRecord>(Math.Min(limit, 64));
        var lastSeq = 0L;
        lock (_storage.Gate)
        {
            var all = _storage.BySeq;
            for (var i = LastBefore(all, before); i >= 0; i--)
            {
                var task = all[i];
                if ((query.State is { } state && task.State != state)
                    || (query.Task is { } name && !string.Equals(task.Message.Task, name, StringComparison.Ordinal))
                    || (query.Queue is { } queue && !string.Equals(task.Message.Queue, queue, StringComparison.Ordinal)))
                {
                    continue;
                }
                if (items.Count == limit)
                {
                    // One more matches: the page is full and another follows.
                    return Task.FromResult(new TaskPage(items, lastSeq.ToString(CultureInfo.InvariantCulture)));
                }
                items.Add(task.ToRecord());
                lastSeq = task.Seq;
            }
        }
        return Task.FromResult(new TaskPage(items, null));
    }

    /// <summary>The index of the last task with a sequence below <paramref name="before"/>, or -1.</summary>
    private static int LastBefore(List<StoredTask> bySeq, long before)
    {
        int low = 0, high = bySeq.Count;
        while (low < high)
        {
            var middle = low + ((high - low) / 2);
            if (bySeq[middle].Seq < before)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }
        return low - 1;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var counts = _storage.Queues.Keys.ToDictionary(name => name, _ => new Dictionary<TaskState, long>(), StringComparer.Ordinal);
            foreach (var task in _storage.BySeq)
            {
                var perState = counts[task.Message.Queue];
                perState[task.State] = perState.GetValueOrDefault(task.State) + 1;
            }
            return Task.FromResult<IReadOnlyList<QueueStats>>(
                _storage.Queues.Select(q => new QueueStats { Name = q.Key, Paused = q.Value.Paused, Counts = counts[q.Key] }).ToList());
        }
    }

    /// <inheritdoc />
    public Task<WaitingTaskCounts> CountWaitingByTaskAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var counts = _storage.BySeq
                .Where(t => t.State is TaskState.Scheduled or TaskState.Queued or TaskState.Retrying or TaskState.Pending)
                .GroupBy(t => (t.Message.Queue, t.Message.Task, t.State))
                .Select(g => new WaitingTaskCount(g.Key.Queue, g.Key.Task, g.Key.State, g.LongCount()))
                .ToList();
            return Task.FromResult(new WaitingTaskCounts(counts, Complete: true));
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var oldest = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
            foreach (var task in _storage.BySeq)
            {
                if (task.State != TaskState.Queued)
                {
                    continue;
                }
                var readyAt = task.NotBefore is { } notBefore && notBefore > task.Message.CreatedAt ? notBefore : task.Message.CreatedAt;
                if (!oldest.TryGetValue(task.Message.Queue, out var known) || readyAt < known)
                {
                    oldest[task.Message.Queue] = readyAt;
                }
            }
            return Task.FromResult<IReadOnlyDictionary<string, DateTimeOffset>>(oldest);
        }
    }

    /// <inheritdoc />
    public Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var purged = new HashSet<StoredTask>();
            foreach (var task in _storage.BySeq)
            {
                if (purged.Count >= maxCount)
                {
                    break;
                }
                if (task.State.IsTerminal() && task.FinishedAt < finishedBefore)
                {
                    purged.Add(task);
                }
            }
            if (purged.Count == 0)
            {
                return Task.FromResult(0);
            }
            _storage.BySeq.RemoveAll(purged.Contains);
            foreach (var task in purged)
            {
                _storage.Tasks.Remove(task.Message.Id);
                // The key goes with its task, as a deleted row's unique index entry does.
                if (task.Message.IdempotencyKey is { } key)
                {
                    _storage.IdempotencyKeys.Remove(key);
                }
            }
            return Task.FromResult(purged.Count);
        }
    }

    /// <inheritdoc />
    public Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        if (!state.IsTerminal())
        {
            throw new ArgumentOutOfRangeException(nameof(state), state, "Only tasks in a terminal state can be deleted.");
        }
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var deleted = new HashSet<StoredTask>();
            foreach (var id in taskIds)
            {
                // A terminal task is in no ready, due or leased index: removing it from the lists is all there is.
                if (_storage.Tasks.TryGetValue(id, out var task) && task.State == state && _storage.Tasks.Remove(id))
                {
                    deleted.Add(task);
                    if (task.Message.IdempotencyKey is { } key)
                    {
                        _storage.IdempotencyKeys.Remove(key);
                    }
                }
            }
            if (deleted.Count > 0)
            {
                _storage.BySeq.RemoveAll(deleted.Contains);
            }
            return Task.FromResult(deleted.Count);
        }
    }
}
