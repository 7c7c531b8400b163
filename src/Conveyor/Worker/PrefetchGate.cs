using System.Diagnostics;

namespace Conveyor;

/// <summary>
/// The leases a worker may hold at once, running and waiting: a semaphore whose size can change while in use.
/// Without a fixed <see cref="WorkerOptions.Prefetch"/> the size follows the work (Little's law): enough leases to
/// keep every handler busy through a fetch's round trip at the rate the handlers finish tasks, between the
/// concurrency and <see cref="WorkerOptions.EffectivePrefetch"/>. Short tasks get a deep buffer (a 3 ms round trip at
/// 30,000 tasks/s is ~100 leases waiting); long tasks about one lease per handler, so a burst of slow tasks spreads
/// over the workers instead of queueing behind one worker's prefetch.
/// </summary>
internal sealed class PrefetchGate : IDisposable
{
    private readonly SemaphoreSlim _free;
    private readonly Lock _lock = new();
    private readonly int _concurrency;
    private readonly int _max;
    private readonly bool _adaptive;
    private int _size;
    // Permits to swallow as leases end, after a shrink that found fewer free permits than it took back.
    private int _debt;
    private long _handlerTicks;
    private long _handlerCount;
    private double _handlerSeconds = double.NaN;
    private double _roundTripSeconds = double.NaN;

    public PrefetchGate(int concurrency, int max, int? fixedSize)
    {
        _concurrency = Math.Max(1, concurrency);
        _max = Math.Max(_concurrency, max);
        _adaptive = fixedSize is null;
        // Until the first measurements: 4 leases per handler, at least 64 (Celery's default multiplier).
        _size = fixedSize is { } size ? Math.Max(1, size) : Math.Clamp(Math.Max(64, _concurrency * 4), _concurrency, _max);
        _free = new SemaphoreSlim(_size, int.MaxValue);
    }

    /// <summary>The leases that may be held now.</summary>
    public int Size => Volatile.Read(ref _size);

    /// <summary>The most the size can grow to; also the largest fetch.</summary>
    public int Max => _adaptive ? _max : _size;

    /// <summary>The fetch that refills the buffer: half of the leases beyond one per handler, so that the other half
    /// keeps the handlers busy while it makes its round trip (the adaptive size holds two round trips' worth). 1 when
    /// the buffer holds about one lease per handler (long tasks, or a fixed prefetch that small): fetch as slots free.</summary>
    public int RefillBatch => Math.Max(1, (Size - _concurrency) / 2);

    public Task WaitAsync(CancellationToken cancellationToken) => _free.WaitAsync(cancellationToken);

    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) => _free.WaitAsync(timeout, cancellationToken);

    public bool TryTake() => _free.Wait(0, CancellationToken.None);

    /// <summary>Gives back permits of leases that ended (or were never fetched).</summary>
    public void Release(int count = 1)
    {
        if (count <= 0)
        {
            return;
        }
        lock (_lock)
        {
            var swallowed = Math.Min(_debt, count);
            _debt -= swallowed;
            count -= swallowed;
        }
        if (count > 0)
        {
            _free.Release(count);
        }
    }

    /// <summary>A handler's run, from the start of its lease's turn to its outcome.</summary>
    public void RecordHandler(long startTimestamp)
    {
        if (_adaptive)
        {
            Interlocked.Add(ref _handlerTicks, Stopwatch.GetTimestamp() - startTimestamp);
            Interlocked.Increment(ref _handlerCount);
        }
    }

    /// <summary>A fetch that returned leases, and how long it took; resizes the gate to the work measured so far.</summary>
    public void RecordFetch(TimeSpan roundTrip)
    {
        if (!_adaptive)
        {
            return;
        }
        int target;
        lock (_lock)
        {
            var count = Interlocked.Exchange(ref _handlerCount, 0);
            var ticks = Interlocked.Exchange(ref _handlerTicks, 0);
            if (count > 0)
            {
                var seconds = (double)ticks / Stopwatch.Frequency / count;
                _handlerSeconds = double.IsNaN(_handlerSeconds) ? seconds : (0.7 * _handlerSeconds) + (0.3 * seconds);
            }
            _roundTripSeconds = double.IsNaN(_roundTripSeconds)
                ? roundTrip.TotalSeconds
                : (0.8 * _roundTripSeconds) + (0.2 * roundTrip.TotalSeconds);
            if (double.IsNaN(_handlerSeconds))
            {
                return;
            }
            target = TargetSize(_concurrency, _handlerSeconds, _roundTripSeconds, _max);
            // Small changes are not worth the churn.
            if (Math.Abs(target - _size) < Math.Max(1, _size / 8))
            {
                return;
            }
        }
        Resize(target);
    }

    /// <summary>Handlers busy, plus what they finish during two round trips (a fetch's, and slack for the next).</summary>
    internal static int TargetSize(int concurrency, double handlerSeconds, double roundTripSeconds, int max)
    {
        if (handlerSeconds <= 0)
        {
            return max;
        }
        var waiting = 2.0 * concurrency * roundTripSeconds / handlerSeconds;
        return waiting >= max ? max : Math.Clamp(concurrency + (int)Math.Ceiling(waiting), concurrency, max);
    }

    internal void Resize(int size)
    {
        var release = 0;
        lock (_lock)
        {
            var delta = size - _size;
            _size = size;
            if (delta > 0)
            {
                var repaid = Math.Min(_debt, delta);
                _debt -= repaid;
                release = delta - repaid;
            }
            else
            {
                // Take back free permits now, and the rest as leases end.
                var owed = -delta;
                while (owed > 0 && _free.Wait(0, CancellationToken.None))
                {
                    owed--;
                }
                _debt += owed;
            }
        }
        if (release > 0)
        {
            _free.Release(release);
        }
    }

    public void Dispose() => _free.Dispose();
}
