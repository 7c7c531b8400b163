using System.Globalization;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>The limit counters (<see cref="ILimitStore"/>): each call one script (<see cref="RedisScripts"/>), atomic on
/// Redis's one thread. Keys: <c>B lim:r:{key}</c> (next free µs), <c>B lim:rates</c> (the rate keys), and the slot keys
/// listed in Scripts/limits.lua.</summary>
public sealed partial class RedisBackend : ILimitStore
{
    /// <inheritdoc />
    public ILimitStore Limits => this;

    /// <inheritdoc />
    public async Task<IReadOnlyList<DateTimeOffset>> ReserveRateSlotsAsync(string key, TimeSpan interval, int count, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var step = LimitTimes.IntervalMicroseconds(interval);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var now = LimitTimes.ToMicroseconds(_time.GetUtcNow());
        var reply = await RunAsync(db, RedisScripts.ReserveRate, [_base, key, Text(now), Text(step * count)]).ConfigureAwait(false);
        var first = long.Parse((string)reply!, CultureInfo.InvariantCulture);
        var slots = new DateTimeOffset[count];
        for (var i = 0; i < count; i++)
        {
            slots[i] = LimitTimes.FromMicroseconds(first + (step * i));
        }
        return slots;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<bool>> AcquireConcurrencySlotsAsync(string key, int limit, IReadOnlyList<ConcurrencySlot> slots, string owner,
        TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        if (slots.Count == 0)
        {
            return [];
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var now = Now();
        var args = new RedisValue[7 + (slots.Count * 2)];
        args[0] = _base;
        args[1] = key;
        args[2] = limit;
        args[3] = owner;
        args[4] = Ms(now);
        args[5] = Ms(now + (long)duration.TotalMilliseconds);
        args[6] = slots.Count;
        var i = 7;
        foreach (var slot in slots)
        {
            args[i++] = IdText(slot.TaskId);
            args[i++] = slot.Token;
        }
        var reply = (int[])(await RunAsync(db, RedisScripts.AcquireSlots, args).ConfigureAwait(false))!;
        return reply.Select(r => r == 1).ToArray();
    }

    /// <inheritdoc />
    public async Task ReleaseConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        if (slots.Count == 0)
        {
            return;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        await RunAsync(db, RedisScripts.ReleaseSlots, SlotArgs([_base, owner, slots.Count], slots)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ConcurrencySlot>> ExtendConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, TimeSpan duration,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        if (slots.Count == 0)
        {
            return [];
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var now = Now();
        var reply = (int[])(await RunAsync(db, RedisScripts.ExtendSlots,
            SlotArgs([_base, owner, Ms(now), Ms(now + (long)duration.TotalMilliseconds), slots.Count], slots)).ConfigureAwait(false))!;
        return slots.Where((_, i) => reply[i] == 0).ToList();
    }

    /// <inheritdoc />
    public async Task<int> ReleaseOwnerAsync(string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(owner);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RedisScripts.ReleaseOwner, [_base, owner]).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<LimitUsage> GetUsageAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var reply = (RedisResult[])(await RunAsync(db, RedisScripts.LimitUsage, [_base, Ms(Now())]).ConfigureAwait(false))!;
        var rateReply = (RedisResult[])reply[0]!;
        var slotReply = (RedisResult[])reply[1]!;
        var rates = new List<RateUsage>(rateReply.Length / 2);
        for (var i = 0; i < rateReply.Length; i += 2)
        {
            rates.Add(new RateUsage((string)rateReply[i]!, LimitTimes.FromMicroseconds(long.Parse((string)rateReply[i + 1]!, CultureInfo.InvariantCulture))));
        }
        var concurrency = new List<ConcurrencyUsage>(slotReply.Length / 2);
        for (var i = 0; i < slotReply.Length; i += 2)
        {
            concurrency.Add(new ConcurrencyUsage((string)slotReply[i]!, (int)slotReply[i + 1]));
        }
        rates.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        concurrency.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return new LimitUsage(rates, concurrency);
    }

    private static RedisValue[] SlotArgs(RedisValue[] head, IReadOnlyList<ConcurrencySlot> slots)
    {
        var args = new RedisValue[head.Length + (slots.Count * 3)];
        head.CopyTo(args, 0);
        var i = head.Length;
        foreach (var slot in slots)
        {
            args[i++] = slot.Key;
            args[i++] = IdText(slot.TaskId);
            args[i++] = slot.Token;
        }
        return args;
    }

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}
