namespace Conveyor.Conformance;

/// <summary>Coordination role, limit counters (<see cref="ILimitStore"/>): rate reservations evenly spaced and disjoint
/// between concurrent callers, concurrency slots capped, released, extended and expiring (docs/limits.md).</summary>
public abstract class LimitConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan SlotLife = TimeSpan.FromSeconds(30);
    private const string Owner = "worker-a";

    private ILimitStore Limits => Backend.Limits;

    private Task<IReadOnlyList<DateTimeOffset>> ReserveAsync(int count, string key = "task:t", ILimitStore? store = null) =>
        (store ?? Limits).ReserveRateSlotsAsync(key, Interval, count, Timeout);

    private static List<ConcurrencySlot> Slots(string key, int count) =>
        Enumerable.Range(0, count).Select(i => new ConcurrencySlot(key, Guid.NewGuid(), i + 1)).ToList();

    private Task<IReadOnlyList<bool>> AcquireAsync(List<ConcurrencySlot> slots, int limit, string owner = Owner, ILimitStore? store = null) =>
        (store ?? Limits).AcquireConcurrencySlotsAsync(slots[0].Key, limit, slots, owner, SlotLife, Timeout);

    private List<DateTimeOffset> Spaced(int from, int count) =>
        Enumerable.Range(from, count).Select(i => Now + (Interval * i)).ToList();

    [Fact]
    public async Task Reservation_spaces_its_start_times_by_the_interval_from_now()
    {
        Assert.Equal(Spaced(0, 3), await ReserveAsync(3));
    }

    [Fact]
    public async Task Reservation_starts_where_the_previous_one_ended()
    {
        await ReserveAsync(3);

        Assert.Equal(Spaced(3, 2), await ReserveAsync(2));
        Advance(TimeSpan.FromMilliseconds(250));
        // Still booked ahead: the next free time (start + 500 ms) is later than now.
        Assert.Equal(Now + TimeSpan.FromMilliseconds(250), Assert.Single(await ReserveAsync(1)));
    }

    [Fact]
    public async Task Reservation_after_the_booked_times_passed_starts_now()
    {
        await ReserveAsync(2);
        Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(Spaced(0, 2), await ReserveAsync(2));
    }

    [Fact]
    public async Task Rate_keys_are_independent()
    {
        await ReserveAsync(5, "task:a");

        Assert.Equal(Spaced(0, 1), await ReserveAsync(1, "task:b"));
        Assert.Equal(Spaced(5, 1), await ReserveAsync(1, "task:a"));
    }

    [Fact]
    public async Task Reservation_of_one_microsecond_interval_is_exact()
    {
        var slots = await Limits.ReserveRateSlotsAsync("task:fast", TimeSpan.FromTicks(10), 3, Timeout);

        Assert.Equal([Now, Now.AddTicks(10), Now.AddTicks(20)], slots);
    }

    [Fact]
    public async Task Reservation_of_a_fraction_of_a_millisecond_keeps_its_microseconds()
    {
        // 3,000 a second: a millisecond store would round the interval to 0 or 1 ms.
        var third = TimeSpan.FromTicks(3333);

        var slots = await Limits.ReserveRateSlotsAsync("task:3000", third, 4, Timeout);

        Assert.Equal([Now, Now.AddTicks(3330), Now.AddTicks(6660), Now.AddTicks(9990)], slots);
    }

    [Fact]
    public async Task Concurrent_reservations_on_two_instances_get_disjoint_evenly_spaced_times()
    {
        var peer = await NewPeerAsync();

        var calls = Enumerable.Range(0, 20).Select(i => ReserveAsync(5, store: i % 2 == 0 ? Limits : peer.Limits)).ToList();
        var all = (await Task.WhenAll(calls)).SelectMany(s => s).Order().ToList();

        // The clock stands still: 100 reservations are exactly the first 100 times, each once.
        Assert.Equal(Spaced(0, 100), all);
        foreach (var call in calls)
        {
            var slots = await call;
            Assert.Equal(Enumerable.Range(0, 5).Select(i => slots[0] + (Interval * i)), slots);
        }
    }

    [Fact]
    public async Task Usage_lists_each_rate_key_with_its_next_free_time()
    {
        await ReserveAsync(3, "task:b");
        await ReserveAsync(1, "queue:a");

        var usage = await Limits.GetUsageAsync(Timeout);

        Assert.Equal([new RateUsage("queue:a", Now + Interval), new RateUsage("task:b", Now + (Interval * 3))], usage.Rates);
    }

    [Fact]
    public async Task Concurrency_slots_are_granted_in_order_up_to_the_limit()
    {
        Assert.Equal([true, true, true, false, false], await AcquireAsync(Slots("tenant:1", 5), limit: 3));
    }

    [Fact]
    public async Task Concurrency_slots_held_are_counted_by_later_calls_and_other_instances()
    {
        var peer = await NewPeerAsync();
        await AcquireAsync(Slots("tenant:1", 2), limit: 3);

        Assert.Equal([true, false], await AcquireAsync(Slots("tenant:1", 2), limit: 3, owner: "worker-b", store: peer.Limits));
        Assert.Equal([true], await AcquireAsync(Slots("tenant:2", 1), limit: 3));
    }

    [Fact]
    public async Task Released_slot_can_be_taken_again()
    {
        var held = Slots("tenant:1", 2);
        await AcquireAsync(held, limit: 2);
        var waiting = Slots("tenant:1", 1);
        Assert.Equal([false], await AcquireAsync(waiting, limit: 2));

        await Limits.ReleaseConcurrencySlotsAsync([held[0]], Owner, Timeout);

        Assert.Equal([true], await AcquireAsync(waiting, limit: 2));
    }

    [Fact]
    public async Task Release_by_another_owner_or_an_earlier_lease_frees_nothing()
    {
        var held = Slots("tenant:1", 1);
        await AcquireAsync(held, limit: 1);

        await Limits.ReleaseConcurrencySlotsAsync([held[0]], "worker-b", Timeout);
        await Limits.ReleaseConcurrencySlotsAsync([held[0] with { Token = held[0].Token + 10 }], Owner, Timeout);

        Assert.Equal([false], await AcquireAsync(Slots("tenant:1", 1), limit: 1));
    }

    [Fact]
    public async Task Task_that_holds_a_slot_keeps_it_under_a_new_lease_and_counts_once()
    {
        var held = Slots("tenant:1", 2);
        await AcquireAsync(held, limit: 2);
        var again = held[0] with { Token = 99 };

        // Delivered again (its earlier lease lost) to another worker: it takes over its own slot.
        Assert.Equal([true], await AcquireAsync([again], limit: 2, owner: "worker-b"));

        Assert.Equal([false], await AcquireAsync(Slots("tenant:1", 1), limit: 2));
        Assert.Equal(2, Assert.Single((await Limits.GetUsageAsync(Timeout)).Concurrency).Held);
        // The earlier lease's release no longer names the holder.
        await Limits.ReleaseConcurrencySlotsAsync([held[0]], Owner, Timeout);
        Assert.Equal([false], await AcquireAsync(Slots("tenant:1", 1), limit: 2));
        await Limits.ReleaseConcurrencySlotsAsync([again], "worker-b", Timeout);
        Assert.Equal([true], await AcquireAsync(Slots("tenant:1", 1), limit: 2));
    }

    [Fact]
    public async Task Slots_come_back_when_their_time_runs_out()
    {
        await AcquireAsync(Slots("tenant:1", 2), limit: 2);
        Advance(SlotLife);
        // At its expiry a slot still counts, as a lease does.
        Assert.Equal([false], await AcquireAsync(Slots("tenant:1", 1), limit: 2));

        Advance(TimeSpan.FromMilliseconds(1));

        Assert.Equal([true, true, false], await AcquireAsync(Slots("tenant:1", 3), limit: 2));
    }

    [Fact]
    public async Task Extension_keeps_slots_past_their_first_expiry()
    {
        var held = Slots("tenant:1", 2);
        await AcquireAsync(held, limit: 2);
        Advance(TimeSpan.FromSeconds(20));

        Assert.Empty(await Limits.ExtendConcurrencySlotsAsync(held, Owner, SlotLife, Timeout));
        Advance(TimeSpan.FromSeconds(20));

        Assert.Equal([false], await AcquireAsync(Slots("tenant:1", 1), limit: 2));
        Assert.Equal(2, Assert.Single((await Limits.GetUsageAsync(Timeout)).Concurrency).Held);
    }

    [Fact]
    public async Task Extension_reports_the_slots_no_longer_held()
    {
        var held = Slots("tenant:1", 2);
        await AcquireAsync(held, limit: 2);
        Advance(SlotLife + TimeSpan.FromSeconds(1));
        // Another task takes one of the expired places.
        await AcquireAsync(Slots("tenant:1", 1), limit: 2);

        var lost = await Limits.ExtendConcurrencySlotsAsync([.. held, held[0] with { Key = "tenant:unknown" }], Owner, SlotLife, Timeout);

        Assert.Equal([.. held, held[0] with { Key = "tenant:unknown" }], lost.OrderBy(s => s.Key, StringComparer.Ordinal).ThenBy(s => s.Token));
        Assert.Equal(1, Assert.Single((await Limits.GetUsageAsync(Timeout)).Concurrency).Held);
    }

    [Fact]
    public async Task Extension_by_another_owner_keeps_nothing()
    {
        var held = Slots("tenant:1", 1);
        await AcquireAsync(held, limit: 1);
        Advance(TimeSpan.FromSeconds(20));

        Assert.Equal(held, await Limits.ExtendConcurrencySlotsAsync(held, "worker-b", SlotLife, Timeout));
        Advance(TimeSpan.FromSeconds(11));

        Assert.Equal([true], await AcquireAsync(Slots("tenant:1", 1), limit: 1));
    }

    [Fact]
    public async Task Releasing_an_owner_frees_every_slot_it_holds_on_every_key()
    {
        await AcquireAsync(Slots("tenant:1", 2), limit: 2);
        await AcquireAsync(Slots("tenant:2", 1), limit: 2);
        await AcquireAsync(Slots("tenant:2", 1), limit: 2, owner: "worker-b");

        Assert.Equal(3, await Limits.ReleaseOwnerAsync(Owner, Timeout));

        Assert.Equal([true, true, false], await AcquireAsync(Slots("tenant:1", 3), limit: 2, owner: "worker-c"));
        Assert.Equal([true, false], await AcquireAsync(Slots("tenant:2", 2), limit: 2, owner: "worker-c"));
        Assert.Equal(0, await Limits.ReleaseOwnerAsync(Owner, Timeout));
    }

    [Fact]
    public async Task Concurrent_acquirers_on_two_instances_never_pass_the_limit()
    {
        var peer = await NewPeerAsync();

        var calls = Enumerable.Range(0, 20)
            .Select(i => AcquireAsync(Slots("tenant:1", 3), limit: 7, owner: "worker-" + i, store: i % 2 == 0 ? Limits : peer.Limits))
            .ToList();
        var granted = (await Task.WhenAll(calls)).Sum(g => g.Count(x => x));

        Assert.Equal(7, granted);
        Assert.Equal(new ConcurrencyUsage("tenant:1", 7), Assert.Single((await peer.Limits.GetUsageAsync(Timeout)).Concurrency));
    }

    [Fact]
    public async Task Usage_lists_keys_with_live_slots_only()
    {
        var released = Slots("tenant:3", 1);
        await AcquireAsync(Slots("tenant:2", 2), limit: 5);
        await AcquireAsync(Slots("tenant:1", 1), limit: 5);
        await AcquireAsync(released, limit: 5);
        await Limits.ReleaseConcurrencySlotsAsync(released, Owner, Timeout);

        var usage = await Limits.GetUsageAsync(Timeout);

        Assert.Equal([new ConcurrencyUsage("tenant:1", 1), new ConcurrencyUsage("tenant:2", 2)], usage.Concurrency);
        Assert.Empty(usage.Rates);
        Advance(SlotLife + TimeSpan.FromSeconds(1));
        Assert.Empty((await Limits.GetUsageAsync(Timeout)).Concurrency);
    }
}
