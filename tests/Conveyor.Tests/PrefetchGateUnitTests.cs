namespace Conveyor.Tests;

public sealed class PrefetchGateUnitTests
{
    [Fact]
    public void Slow_handlers_need_about_one_lease_each()
    {
        // 1 s handlers, 2 ms round trips: what 16 handlers finish in two round trips rounds up to one more lease.
        Assert.Equal(17, PrefetchGate.TargetSize(16, handlerSeconds: 1, roundTripSeconds: 0.002, max: 256));
    }

    [Fact]
    public void Fast_handlers_need_what_they_finish_during_two_round_trips()
    {
        // 16 handlers of 1 ms finish 16,000/s; two round trips of 2 ms is 64 tasks, plus the 16 running.
        Assert.Equal(80, PrefetchGate.TargetSize(16, handlerSeconds: 0.001, roundTripSeconds: 0.002, max: 256));
    }

    [Fact]
    public void Near_instant_handlers_get_the_ceiling()
    {
        Assert.Equal(256, PrefetchGate.TargetSize(16, handlerSeconds: 0.000_002, roundTripSeconds: 0.003, max: 256));
        Assert.Equal(256, PrefetchGate.TargetSize(16, handlerSeconds: 0, roundTripSeconds: 0.003, max: 256));
    }

    [Fact]
    public void Shrinking_takes_back_free_permits_now_and_the_rest_as_leases_end()
    {
        using var gate = new PrefetchGate(concurrency: 4, max: 256, fixedSize: null);
        Assert.Equal(64, gate.Size);
        for (var i = 0; i < 60; i++)
        {
            Assert.True(gate.TryTake());
        }

        gate.Resize(8);
        Assert.False(gate.TryTake());
        gate.Release(55);

        // The 4 free permits went at once, and 52 of the 55 given back were swallowed: 3 free and 5 still held make 8.
        Assert.True(gate.TryTake());
        Assert.True(gate.TryTake());
        Assert.True(gate.TryTake());
        Assert.False(gate.TryTake());
    }

    [Fact]
    public void Growing_repays_a_debt_before_adding_permits()
    {
        using var gate = new PrefetchGate(concurrency: 4, max: 256, fixedSize: null);
        for (var i = 0; i < 64; i++)
        {
            Assert.True(gate.TryTake());
        }
        gate.Resize(16);

        gate.Resize(80);
        gate.Release(64);

        var free = 0;
        while (gate.TryTake())
        {
            free++;
        }
        Assert.Equal(80, free);
    }

    [Fact]
    public void A_fixed_prefetch_never_resizes()
    {
        using var gate = new PrefetchGate(concurrency: 4, max: 256, fixedSize: 7);
        gate.RecordHandler(System.Diagnostics.Stopwatch.GetTimestamp());
        gate.RecordFetch(TimeSpan.FromMilliseconds(2));

        Assert.Equal(7, gate.Size);
        Assert.Equal(7, gate.Max);
    }
}
