using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Stats;

/// <summary>
/// Counts the task events of every process on the backend in buckets of <see cref="BucketLength"/> (5 s) over the last
/// <see cref="Window"/> (15 min), for the dashboard's charts (<c>GET /api/v1/stats</c>): enqueued, started, succeeded,
/// failed attempts, dead tasks, and the queue wait of each start. Kept in memory from this process's start: a server
/// that restarts begins with empty charts. Subscribes to other processes' events too (the bridge then asks them to send
/// theirs through the notifier for as long as this process runs), so a server without a worker sees its workers' tasks.
/// </summary>
internal sealed class TaskStatsRecorder(TaskEventBus bus, IOptions<ConveyorApiOptions> options, TimeProvider time) : IHostedService, IDisposable
{
    /// <summary>Length of one bucket: 5 s.</summary>
    public static readonly TimeSpan BucketLength = TimeSpan.FromSeconds(5);

    /// <summary>How far back the buckets go: 15 min.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(15);

    /// <summary>Tasks whose wait is being timed at most: 100,000. A task enqueued while this many wait is not timed.</summary>
    public const int MaxTrackedWaits = 100_000;

    private static readonly int BucketCount = (int)(Window / BucketLength);
    private readonly Bucket[] _buckets = Enumerable.Range(0, BucketCount).Select(_ => new Bucket()).ToArray();
    // When each waiting task became due: its enqueue, or the time its retry was set for. Removed when it starts or ends.
    private readonly Dictionary<Guid, DateTimeOffset> _dueAt = [];
    private readonly Dictionary<Guid, DateTimeOffset> _startedFirst = [];
    private const int MaxEarlyStarts = 10_000;
    private static readonly TimeSpan EarlyStartWindow = TimeSpan.FromSeconds(10);
    private readonly Lock _gate = new();
    private IDisposable? _subscription;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.RecordTaskStats)
        {
            _subscription = bus.Subscribe(Record, includeRemote: true);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _subscription?.Dispose();
        _subscription = null;
    }

    /// <summary>Whether events are being recorded (<see cref="ConveyorApiOptions.RecordTaskStats"/>).</summary>
    public bool Recording => _subscription is not null;

    // A worker's start can be published before the enqueue that preceded it (the enqueuing side raises its event after
    // the write returns, and the worker may have fetched the task by then): such starts wait here a few seconds for
    // their enqueue. Bounded; a start whose enqueue never comes (enqueued before this server ran) is dropped.
    private void RememberEarlyStart(TaskEvent e)
    {
        if (_startedFirst.Count >= MaxEarlyStarts)
        {
            var before = e.At - EarlyStartWindow;
            foreach (var (id, at) in _startedFirst)
            {
                if (at < before)
                {
                    _startedFirst.Remove(id);
                }
            }
            if (_startedFirst.Count >= MaxEarlyStarts)
            {
                return;
            }
        }
        _startedFirst[e.TaskId] = e.At;
    }

    private static void AddWait(Bucket bucket, QueueCounts queue, TimeSpan waited)
    {
        var wait = Math.Max(0, waited.TotalMilliseconds);
        bucket.AddWait(wait);
        queue.WaitCount++;
        queue.WaitSum += wait;
    }

    private static long BucketOf(DateTimeOffset at) => at.UtcTicks / BucketLength.Ticks;

    internal void Record(TaskEvent e)
    {
        var index = BucketOf(e.At);
        lock (_gate)
        {
            var bucket = _buckets[(int)(index % BucketCount)];
            if (bucket.Index != index)
            {
                if (bucket.Index > index)
                {
                    return; // older than the window
                }
                bucket.Reset(index);
            }
            var queue = bucket.Queue(e.Queue);
            switch (e.Kind)
            {
                case TaskEventKind.Enqueued:
                    bucket.Enqueued++;
                    if (e.State == TaskState.Queued && _startedFirst.Remove(e.TaskId, out var startedAt))
                    {
                        AddWait(bucket, queue, startedAt - e.At);
                    }
                    else if (e.State == TaskState.Queued && _dueAt.Count < MaxTrackedWaits)
                    {
                        _dueAt[e.TaskId] = e.At;
                    }
                    break;
                case TaskEventKind.Started:
                    bucket.Started++;
                    if (_dueAt.Remove(e.TaskId, out var due))
                    {
                        AddWait(bucket, queue, e.At - due);
                    }
                    else
                    {
                        RememberEarlyStart(e);
                    }
                    break;
                case TaskEventKind.Succeeded:
                    bucket.Succeeded++;
                    queue.Succeeded++;
                    break;
                case TaskEventKind.Retrying:
                    bucket.Failed++;
                    queue.Failed++;
                    if (e.RetryAt is { } retryAt && _dueAt.Count < MaxTrackedWaits)
                    {
                        _dueAt[e.TaskId] = retryAt;
                    }
                    break;
                case TaskEventKind.Dead:
                    bucket.Failed++;
                    bucket.Dead++;
                    queue.Failed++;
                    _dueAt.Remove(e.TaskId);
                    break;
                case TaskEventKind.Cancelled:
                case TaskEventKind.Expired:
                    _dueAt.Remove(e.TaskId);
                    break;
            }
        }
    }

    /// <summary>The buckets of the window up to now, oldest first, and each queue's totals over it.</summary>
    public StatsSnapshot Snapshot()
    {
        var now = BucketOf(time.GetUtcNow());
        var first = now - BucketCount + 1;
        var buckets = new List<StatsBucket>(BucketCount);
        var queues = new Dictionary<string, QueueCounts>(StringComparer.Ordinal);
        lock (_gate)
        {
            for (var index = first; index <= now; index++)
            {
                var bucket = _buckets[(int)(index % BucketCount)];
                var at = new DateTimeOffset(index * BucketLength.Ticks, TimeSpan.Zero);
                if (bucket.Index != index)
                {
                    buckets.Add(new StatsBucket(at, 0, 0, 0, 0, 0, 0, null, null));
                    continue;
                }
                buckets.Add(new StatsBucket(at, bucket.Enqueued, bucket.Started, bucket.Succeeded, bucket.Failed, bucket.Dead,
                    bucket.WaitCount, bucket.WaitCount == 0 ? null : bucket.WaitSum / bucket.WaitCount, bucket.WaitCount == 0 ? null : bucket.WaitMax));
                foreach (var (name, counts) in bucket.Queues)
                {
                    var total = queues.TryGetValue(name, out var t) ? t : queues[name] = new QueueCounts();
                    total.Succeeded += counts.Succeeded;
                    total.Failed += counts.Failed;
                    total.WaitCount += counts.WaitCount;
                    total.WaitSum += counts.WaitSum;
                }
            }
        }
        return new StatsSnapshot(
            new DateTimeOffset(first * BucketLength.Ticks, TimeSpan.Zero),
            (int)BucketLength.TotalSeconds,
            (int)Window.TotalSeconds,
            Recording,
            buckets,
            queues.OrderBy(q => q.Key, StringComparer.Ordinal)
                .Select(q => new QueueRate(q.Key, q.Value.Succeeded, q.Value.Failed, q.Value.WaitCount == 0 ? null : q.Value.WaitSum / q.Value.WaitCount))
                .ToList());
    }

    private sealed class Bucket
    {
        public long Index = -1;
        public long Enqueued, Started, Succeeded, Failed, Dead, WaitCount;
        public double WaitSum, WaitMax;
        public Dictionary<string, QueueCounts> Queues { get; } = new(StringComparer.Ordinal);

        public void Reset(long index)
        {
            Index = index;
            Enqueued = Started = Succeeded = Failed = Dead = WaitCount = 0;
            WaitSum = WaitMax = 0;
            Queues.Clear();
        }

        public QueueCounts Queue(string name) => Queues.TryGetValue(name, out var counts) ? counts : Queues[name] = new QueueCounts();

        public void AddWait(double milliseconds)
        {
            WaitCount++;
            WaitSum += milliseconds;
            WaitMax = Math.Max(WaitMax, milliseconds);
        }
    }

    private sealed class QueueCounts
    {
        public long Succeeded, Failed, WaitCount;
        public double WaitSum;
    }
}

/// <summary>The answer of <c>GET /api/v1/stats</c>: task activity over the last 15 minutes.</summary>
/// <param name="Since">Start of the first bucket.</param>
/// <param name="BucketSeconds">Length of each bucket in seconds (5).</param>
/// <param name="WindowSeconds">Length of the window in seconds (900).</param>
/// <param name="Recording">Whether the server records events (<c>Conveyor:RecordTaskStats</c>); false: every count is 0.</param>
/// <param name="Buckets">Every bucket of the window, oldest first, the last one the current (partial) one.</param>
/// <param name="Queues">Per queue, totals over the window.</param>
public sealed record StatsSnapshot(DateTimeOffset Since, int BucketSeconds, int WindowSeconds, bool Recording,
    IReadOnlyList<StatsBucket> Buckets, IReadOnlyList<QueueRate> Queues);

/// <summary>Task events of one bucket.</summary>
/// <param name="At">Start of the bucket.</param>
/// <param name="Enqueued">Tasks enqueued (or queued again by a manual retry).</param>
/// <param name="Started">Attempts started.</param>
/// <param name="Succeeded">Attempts that succeeded.</param>
/// <param name="Failed">Attempts that failed (retrying or dead).</param>
/// <param name="Dead">Tasks that went dead.</param>
/// <param name="WaitCount">Starts whose queue wait is known (the task was enqueued, or set to retry, while this server ran).</param>
/// <param name="WaitMsAvg">Average queue wait of those starts in milliseconds: from enqueue (or the retry time) to start.</param>
/// <param name="WaitMsMax">Longest of those waits in milliseconds.</param>
public sealed record StatsBucket(DateTimeOffset At, long Enqueued, long Started, long Succeeded, long Failed, long Dead,
    long WaitCount, double? WaitMsAvg, double? WaitMsMax);

/// <summary>One queue's totals over the window.</summary>
/// <param name="Queue">Queue name.</param>
/// <param name="Succeeded">Attempts that succeeded.</param>
/// <param name="Failed">Attempts that failed.</param>
/// <param name="WaitMsAvg">Average queue wait in milliseconds, of the starts whose wait is known.</param>
public sealed record QueueRate(string Queue, long Succeeded, long Failed, double? WaitMsAvg);
