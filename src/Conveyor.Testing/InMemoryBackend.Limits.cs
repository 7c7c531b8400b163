using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend : ILimitStore
{
    /// <inheritdoc />
    public ILimitStore Limits => this;

    /// <inheritdoc />
    public Task<IReadOnlyList<DateTimeOffset>> ReserveRateSlotsAsync(string key, TimeSpan interval, int count, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var step = LimitTimes.IntervalMicroseconds(interval);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var now = LimitTimes.ToMicroseconds(Now());
            var first = _storage.RateNextFree.TryGetValue(key, out var nextFree) ? Math.Max(now, LimitTimes.ToMicroseconds(nextFree)) : now;
            _storage.RateNextFree[key] = LimitTimes.FromMicroseconds(first + (step * count));
            var slots = new DateTimeOffset[count];
            for (var i = 0; i < count; i++)
            {
                slots[i] = LimitTimes.FromMicroseconds(first + (step * i));
            }
            return Task.FromResult<IReadOnlyList<DateTimeOffset>>(slots);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<bool>> AcquireConcurrencySlotsAsync(string key, int limit, IReadOnlyList<ConcurrencySlot> slots, string owner,
        TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var now = Now();
            if (!_storage.ConcurrencySlots.TryGetValue(key, out var held))
            {
                held = [];
                _storage.ConcurrencySlots[key] = held;
            }
            foreach (var expired in held.Where(h => h.Value.ExpiresAt < now).Select(h => h.Key).ToList())
            {
                held.Remove(expired);
            }
            var granted = new bool[slots.Count];
            for (var i = 0; i < slots.Count; i++)
            {
                var slot = slots[i];
                if (held.ContainsKey(slot.TaskId) || held.Count < limit)
                {
                    held[slot.TaskId] = new HeldSlot(owner, slot.Token, now + duration);
                    granted[i] = true;
                }
            }
            if (held.Count == 0)
            {
                _storage.ConcurrencySlots.Remove(key);
            }
            return Task.FromResult<IReadOnlyList<bool>>(granted);
        }
    }

    /// <inheritdoc />
    public Task ReleaseConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        lock (_storage.Gate)
        {
            foreach (var slot in slots)
            {
                if (_storage.ConcurrencySlots.TryGetValue(slot.Key, out var held) && Holds(held, slot, owner))
                {
                    held.Remove(slot.TaskId);
                    if (held.Count == 0)
                    {
                        _storage.ConcurrencySlots.Remove(slot.Key);
                    }
                }
            }
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ConcurrencySlot>> ExtendConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, TimeSpan duration,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        var lost = new List<ConcurrencySlot>();
        lock (_storage.Gate)
        {
            var now = Now();
            foreach (var slot in slots)
            {
                if (_storage.ConcurrencySlots.TryGetValue(slot.Key, out var held) && Holds(held, slot, owner) && held[slot.TaskId].ExpiresAt >= now)
                {
                    held[slot.TaskId] = held[slot.TaskId] with { ExpiresAt = now + duration };
                }
                else
                {
                    lost.Add(slot);
                }
            }
        }
        return Task.FromResult<IReadOnlyList<ConcurrencySlot>>(lost);
    }

    /// <inheritdoc />
    public Task<int> ReleaseOwnerAsync(string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(owner);
        var released = 0;
        lock (_storage.Gate)
        {
            foreach (var (key, held) in _storage.ConcurrencySlots.ToList())
            {
                foreach (var taskId in held.Where(h => h.Value.Owner == owner).Select(h => h.Key).ToList())
                {
                    held.Remove(taskId);
                    released++;
                }
                if (held.Count == 0)
                {
                    _storage.ConcurrencySlots.Remove(key);
                }
            }
        }
        return Task.FromResult(released);
    }

    /// <inheritdoc />
    public Task<LimitUsage> GetUsageAsync(CancellationToken cancellationToken)
    {
        lock (_storage.Gate)
        {
            var now = Now();
            var rates = _storage.RateNextFree.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => new RateUsage(r.Key, r.Value)).ToList();
            var concurrency = _storage.ConcurrencySlots
                .Select(c => new ConcurrencyUsage(c.Key, c.Value.Count(h => h.Value.ExpiresAt >= now)))
                .Where(c => c.Held > 0)
                .OrderBy(c => c.Key, StringComparer.Ordinal)
                .ToList();
            return Task.FromResult(new LimitUsage(rates, concurrency));
        }
    }

    private static bool Holds(Dictionary<Guid, HeldSlot> held, ConcurrencySlot slot, string owner) =>
        held.TryGetValue(slot.TaskId, out var holder) && holder.Owner == owner && holder.Token == slot.Token;
}
