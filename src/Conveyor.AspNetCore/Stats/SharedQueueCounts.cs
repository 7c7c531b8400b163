using Conveyor.Backends;

namespace Conveyor.AspNetCore.Stats;

/// <summary>
/// Every queue's counts (<see cref="ITaskStore.GetQueuesAsync(CancellationToken)"/>) for <c>GET /api/v1/queues</c>, one
/// store read shared by the requests that can use it, so that any number of open dashboards and callers cost at most one
/// read at a time (docs/dashboard.md#counts-over-a-large-store).
/// </summary>
/// <remarks>
/// A request says how old a read it takes may be (<c>maxAge</c>, from the start of the read to its own arrival). With
/// none (0, the default) it gets a read that started after it arrived: what it wrote before is counted, as before this
/// was shared; it joins such a read when one is waiting to start, and otherwise waits for the read under way to end and
/// shares the next one with every request that came meanwhile. The dashboard asks for 1 s: requests within a second share
/// the last read, and a view that saw a task event less than 1 s before its read reads once more a second later.
/// A failed read is not kept: each of its requests gets the error, and the next request reads again. Exact counts
/// (<c>exact=true</c>: <see cref="ITaskStore.GetQueuesAsync(int, CancellationToken)"/> with <see cref="int.MaxValue"/>)
/// are read and shared apart from the others.
/// </remarks>
internal sealed class SharedQueueCounts(IConveyorBackend backend, TimeProvider time)
{
    /// <summary>Longest a shared read may take before its requests get an error: 30 s.</summary>
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(30);

    private readonly Shared _limited = new(time, token => backend.Store.GetQueuesAsync(token));
    private readonly Shared _exact = new(time, token => backend.Store.GetQueuesAsync(int.MaxValue, token));

    /// <summary>Longest <c>maxAge</c> a request may give: 60 s.</summary>
    public static TimeSpan MaxAllowedAge { get; } = TimeSpan.FromSeconds(60);

    /// <summary>Store reads made so far, exact ones included (for tests).</summary>
    public int Reads => _limited.Reads + _exact.Reads;

    /// <summary>Every queue's counts, the finished ones up to the store's limit (or all of them exactly, when
    /// <paramref name="exact"/>), from a read that started less than <paramref name="maxAge"/> before this call, or,
    /// with <see cref="TimeSpan.Zero"/>, after it.</summary>
    public Task<IReadOnlyList<QueueStats>> ReadAsync(TimeSpan maxAge, bool exact, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxAge, TimeSpan.Zero);
        return (exact ? _exact : _limited).ReadAsync(maxAge, cancellationToken);
    }

    /// <summary>One kind of read, shared.</summary>
    private sealed class Shared(TimeProvider time, Func<CancellationToken, Task<IReadOnlyList<QueueStats>>> read)
    {
        private readonly Lock _gate = new();
        private Reading? _last;
        private Running? _running;
        private Task<Reading>? _next;
        private int _generation;

        public int Reads { get; private set; }

        public async Task<IReadOnlyList<QueueStats>> ReadAsync(TimeSpan maxAge, CancellationToken cancellationToken)
        {
            var arrival = time.GetTimestamp();
            Task<Reading> reading;
            lock (_gate)
            {
                if (_last is { } last && time.GetElapsedTime(last.StartedAt, arrival) < maxAge)
                {
                    return last.Queues;
                }
                if (_running is { } running && time.GetElapsedTime(running.StartedAt, arrival) < maxAge)
                {
                    reading = running.Task;
                }
                else
                {
                    reading = _running is null ? Start() : _next ??= FollowAsync(_running.Task);
                }
            }
            return (await reading.WaitAsync(cancellationToken).ConfigureAwait(false)).Queues;
        }

        /// <summary>Starts a read; under the lock, with none running.</summary>
        private Task<Reading> Start()
        {
            var generation = ++_generation;
            var startedAt = time.GetTimestamp();
            // Off the lock (the store's first steps may run synchronously); its end takes the lock, so it cannot clear
            // _running before it is set.
            var task = Task.Run(() => ReadStoreAsync(generation, startedAt));
            _running = new Running(generation, startedAt, task);
            Reads++;
            return task;
        }

        private async Task<Reading> ReadStoreAsync(int generation, long startedAt)
        {
            try
            {
                using var timeout = new CancellationTokenSource(ReadTimeout);
                var reading = new Reading(generation, startedAt, await read(timeout.Token).ConfigureAwait(false));
                lock (_gate)
                {
                    if (_last is null || _last.Generation < generation)
                    {
                        _last = reading;
                    }
                }
                return reading;
            }
            finally
            {
                lock (_gate)
                {
                    if (_running?.Generation == generation)
                    {
                        _running = null;
                    }
                }
            }
        }

        /// <summary>The read that starts once <paramref name="previous"/> ended, for the requests that came while it ran
        /// (a read started since then by another request started after they came, so it serves them too).</summary>
        private async Task<Reading> FollowAsync(Task<Reading> previous)
        {
            await ((Task)previous).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            Task<Reading> reading;
            lock (_gate)
            {
                _next = null;
                reading = _running?.Task ?? Start();
            }
            return await reading.ConfigureAwait(false);
        }
    }

    private sealed record Running(int Generation, long StartedAt, Task<Reading> Task);

    private sealed record Reading(int Generation, long StartedAt, IReadOnlyList<QueueStats> Queues);
}
