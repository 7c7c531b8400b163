using Conveyor.Backends;

namespace Conveyor;

/// <summary>
/// Start times of one rate limit that this worker reserved ahead, so that a limit that does not bind adds no round trip
/// to a fetch: a batch takes its times from here, and the reservation for the next batch runs in the background. It
/// holds four batches' times, and at most <see cref="Horizon"/> of the rate (100 ms: 100,000 times at 1,000,000/s, 10 at 100/s, none under 10/s,
/// where every batch reserves its own times and the round trip does not matter). Times left when the work stops are
/// never used: at most that much of the rate goes unused, and a worker may start that much late in a burst.
/// </summary>
internal sealed class RateCredit
{
    /// <summary>How much of the rate is reserved ahead at most: 100 ms of starts.</summary>
    public static readonly TimeSpan Horizon = TimeSpan.FromMilliseconds(100);

    private readonly ILimitStore _store;
    private readonly RateKey _rate;
    private readonly int _most;
    private readonly Action<Exception> _onRefillError;
    private readonly Lock _gate = new();
    // Ascending.
    private readonly List<DateTimeOffset> _times = [];
    private Task? _refill;
    private int _lastBatch;

    public RateCredit(ILimitStore store, RateKey rate, Action<Exception> onRefillError)
    {
        _store = store;
        _rate = rate;
        _onRefillError = onRefillError;
        _most = (int)Math.Min(100_000, Horizon.Ticks / Math.Max(1, rate.Interval.Ticks));
    }

    /// <summary>Times held now (for tests).</summary>
    internal int Count
    {
        get
        {
            lock (_gate)
            {
                return _times.Count;
            }
        }
    }

    /// <summary><paramref name="count"/> start times, ascending: from those reserved ahead that are not older than
    /// <paramref name="oldest"/>, then from the background reservation under way, then reserved now (with the next
    /// batch's, when this limit reserves ahead).</summary>
    public async Task<List<DateTimeOffset>> TakeAsync(int count, DateTimeOffset oldest, CancellationToken cancellationToken)
    {
        if (_most == 0)
        {
            return [.. await _store.ReserveRateSlotsAsync(_rate.Key, _rate.Interval, count, cancellationToken).ConfigureAwait(false)];
        }
        var times = new List<DateTimeOffset>(count);
        Task? pending;
        lock (_gate)
        {
            _lastBatch = count;
            TakeHeld(times, count, oldest);
            pending = _refill;
        }
        if (times.Count < count && pending is not null)
        {
            await pending.ConfigureAwait(false);
            lock (_gate)
            {
                TakeHeld(times, count, oldest);
            }
        }
        if (times.Count < count)
        {
            var missing = count - times.Count;
            var reserved = await _store.ReserveRateSlotsAsync(_rate.Key, _rate.Interval, missing + RefillSize(count), cancellationToken).ConfigureAwait(false);
            times.AddRange(reserved.Take(missing));
            lock (_gate)
            {
                Hold(reserved.Skip(missing));
            }
        }
        else
        {
            RefillIfLow();
        }
        return times;
    }

    // Four batches like the last at a time (within the horizon): a limit that does not bind then costs one limit-store
    // call per four fetched batches, not one per batch (measured: a call per batch cost the PostgreSQL drain 11 % and the
    // RabbitMQ drain, whose limit store is SQLite's writer, 18 %, docs/benchmarks.md).
    private const int BatchesAhead = 4;

    private int RefillSize(int batch) => Math.Min(_most, Math.Max(1, batch * BatchesAhead));

    /// <summary>Starts a background reservation when what is held would not cover a batch like the last.</summary>
    private void RefillIfLow()
    {
        int size;
        lock (_gate)
        {
            if (_refill is not null || _times.Count >= _lastBatch)
            {
                return;
            }
            size = RefillSize(_lastBatch);
            _refill = Task.Run(() => RefillAsync(size));
        }
    }

    private async Task RefillAsync(int size)
    {
        try
        {
            var reserved = await _store.ReserveRateSlotsAsync(_rate.Key, _rate.Interval, size, CancellationToken.None).ConfigureAwait(false);
            lock (_gate)
            {
                Hold(reserved);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The next batch reserves its own times.
            _onRefillError(ex);
        }
        finally
        {
            lock (_gate)
            {
                _refill = null;
            }
        }
    }

    /// <summary>Under the lock: moves up to <paramref name="count"/> − taken held times into <paramref name="into"/>,
    /// dropping those older than <paramref name="oldest"/>.</summary>
    private void TakeHeld(List<DateTimeOffset> into, int count, DateTimeOffset oldest)
    {
        var stale = 0;
        while (stale < _times.Count && _times[stale] < oldest)
        {
            stale++;
        }
        var take = Math.Min(count - into.Count, _times.Count - stale);
        into.AddRange(_times.GetRange(stale, take));
        _times.RemoveRange(0, stale + take);
    }

    /// <summary>Under the lock: keeps <paramref name="times"/>, in order with those held.</summary>
    private void Hold(IEnumerable<DateTimeOffset> times)
    {
        _times.AddRange(times);
        _times.Sort();
    }
}
