namespace Conveyor.Backends;

/// <summary>A concurrency slot as its holder names it: the limit's key, the task holding it and the lease it runs
/// under (the token of <see cref="Lease.Token"/>), so that a late release by an earlier lease of the same task cannot
/// free the slot of the lease that runs it now.</summary>
/// <param name="Key">The limit's key, such as <c>task:reports.build:tenant-7</c>.</param>
/// <param name="TaskId">The task holding the slot.</param>
/// <param name="Token">The fencing token of the lease the task runs under.</param>
public readonly record struct ConcurrencySlot(string Key, Guid TaskId, long Token);

/// <summary>How far a rate limit's reservations reach: the first free start time of its key.</summary>
/// <param name="Key">The limit's key, such as <c>task:http.request</c>.</param>
/// <param name="NextFree">The earliest start time a reservation made now would get; at or before now when the limit
/// does not bind.</param>
public sealed record RateUsage(string Key, DateTimeOffset NextFree);

/// <summary>How many slots of a concurrency limit are held now.</summary>
/// <param name="Key">The limit's key.</param>
/// <param name="Held">Slots held and not expired.</param>
public sealed record ConcurrencyUsage(string Key, int Held);

/// <summary>The state of every limit a store knows: rate keys that were reserved in and concurrency keys whose slots are
/// held now.</summary>
/// <param name="Rates">Rate keys, by key.</param>
/// <param name="Concurrency">Concurrency keys with at least one live slot, by key.</param>
public sealed record LimitUsage(IReadOnlyList<RateUsage> Rates, IReadOnlyList<ConcurrencyUsage> Concurrency);

/// <summary>
/// The coordination sub-role behind rate and concurrency limits (docs/limits.md): counters shared by every process on
/// the backend, each call one atomic step (one statement, transaction or script). Keys are opaque to the store.
/// </summary>
/// <remarks>
/// Times come from the backend's <see cref="TimeProvider"/>, as every other time it compares. Rate limits are evenly
/// spaced reservations (GCRA with a burst of one): a key holds the next free start time, and a reservation of
/// <c>count</c> starts takes <c>max(now, next free)</c>, then one <c>interval</c> later each, and moves the next free time
/// past the last. Concurrency slots are held per (key, task) with an expiry, so that slots of a worker that died come
/// back when their time runs out, as its leases do; the worker extends them with its leases.
/// </remarks>
public interface ILimitStore
{
    /// <summary>Reserves <paramref name="count"/> start times for <paramref name="key"/>, <paramref name="interval"/>
    /// apart, the first at now or at the key's next free time, whichever is later; callers at once get disjoint times.
    /// Returns them in order.</summary>
    /// <param name="key">The rate limit's key.</param>
    /// <param name="interval">The period divided by the number of starts allowed in it (<c>10/s</c>: 100 ms); at least
    /// 1 µs.</param>
    /// <param name="count">How many start times, at least 1.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<IReadOnlyList<DateTimeOffset>> ReserveRateSlotsAsync(string key, TimeSpan interval, int count, CancellationToken cancellationToken);

    /// <summary>Takes a slot of <paramref name="key"/> for each of <paramref name="slots"/> in order while fewer than
    /// <paramref name="limit"/> live slots are held, and returns whether each got one. A task that holds a live slot of
    /// the key already keeps it (under the new token and owner) and counts once. Expired slots of the key are dropped
    /// first. Taken slots expire <paramref name="duration"/> from now unless extended.</summary>
    /// <param name="key">The concurrency limit's key; every element of <paramref name="slots"/> names it.</param>
    /// <param name="limit">Most slots held at once, at least 1.</param>
    /// <param name="slots">The slots wanted, in the order they are granted.</param>
    /// <param name="owner">The worker that holds them (<see cref="ReleaseOwnerAsync"/>).</param>
    /// <param name="duration">Their life unless extended: the worker's lease duration.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<IReadOnlyList<bool>> AcquireConcurrencySlotsAsync(string key, int limit, IReadOnlyList<ConcurrencySlot> slots, string owner,
        TimeSpan duration, CancellationToken cancellationToken);

    /// <summary>Frees the slots that <paramref name="owner"/> holds among <paramref name="slots"/> (same key, task and
    /// token); the others are left alone.</summary>
    Task ReleaseConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, CancellationToken cancellationToken);

    /// <summary>Makes the slots that <paramref name="owner"/> holds among <paramref name="slots"/> expire
    /// <paramref name="duration"/> from now, and returns those it no longer holds (expired and dropped, or taken over).</summary>
    Task<IReadOnlyList<ConcurrencySlot>> ExtendConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, TimeSpan duration,
        CancellationToken cancellationToken);

    /// <summary>Frees every slot <paramref name="owner"/> holds: for a worker known to be gone, with its leases
    /// (<see cref="IQueueBackend.AbandonLeasesAsync"/>). Returns how many.</summary>
    Task<int> ReleaseOwnerAsync(string owner, CancellationToken cancellationToken);

    /// <summary>Every rate key reserved in, with its next free time, and every concurrency key with live slots, with how
    /// many; each list by key (ordinal).</summary>
    Task<LimitUsage> GetUsageAsync(CancellationToken cancellationToken);
}
