using Conveyor.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Conveyor.Tests;

/// <summary>Start times reserved ahead by a worker (<see cref="RateCredit"/>), on the in-memory limit store and a fake clock.</summary>
public sealed class RateCreditUnitTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));

    private static readonly TimeSpan Microsecond = TimeSpan.FromTicks(10);

    [Fact]
    public async Task Fast_limit_reserves_four_batches_ahead_and_takes_them_without_a_call()
    {
        var store = new InMemoryBackend(_time);
        var credit = new RateCredit(store, new RateKey("task:t", Microsecond), ex => throw ex);
        var now = _time.GetUtcNow();

        var first = await credit.TakeAsync(4, now, CancellationToken.None);

        Assert.Equal(Enumerable.Range(0, 4).Select(i => now + (Microsecond * i)), first);
        Assert.Equal(16, credit.Count);
        Assert.Equal(now + (Microsecond * 20), await NextFreeAsync(store));
        for (var batch = 1; batch <= 3; batch++)
        {
            Assert.Equal(Enumerable.Range(4 * batch, 4).Select(i => now + (Microsecond * i)), await credit.TakeAsync(4, now, CancellationToken.None));
            // Taken from what is held: no call while four or more are left.
            Assert.Equal(now + (Microsecond * 20), await NextFreeAsync(store));
        }
        Assert.Equal(4, credit.Count);
        // The last held batch is taken; the next four are reserved in the background.
        Assert.Equal(Enumerable.Range(16, 4).Select(i => now + (Microsecond * i)), await credit.TakeAsync(4, now, CancellationToken.None));
        await WaitUntilAsync(() => credit.Count == 16);
        Assert.Equal(now + (Microsecond * 36), await NextFreeAsync(store));
        Assert.Equal(Enumerable.Range(20, 4).Select(i => now + (Microsecond * i)), await credit.TakeAsync(4, now, CancellationToken.None));
    }

    [Fact]
    public async Task Times_held_past_their_use_are_dropped()
    {
        var store = new InMemoryBackend(_time);
        var credit = new RateCredit(store, new RateKey("task:t", TimeSpan.FromMilliseconds(1)), ex => throw ex);
        await credit.TakeAsync(2, _time.GetUtcNow(), CancellationToken.None);
        _time.Advance(TimeSpan.FromSeconds(5));
        var now = _time.GetUtcNow();

        var times = await credit.TakeAsync(2, now - TimeSpan.FromSeconds(1), CancellationToken.None);

        Assert.Equal([now, now + TimeSpan.FromMilliseconds(1)], times);
    }

    [Fact]
    public async Task Slow_limit_reserves_only_what_each_batch_needs()
    {
        var store = new InMemoryBackend(_time);
        var credit = new RateCredit(store, new RateKey("task:t", TimeSpan.FromSeconds(1)), ex => throw ex);
        var now = _time.GetUtcNow();

        Assert.Equal([now, now.AddSeconds(1), now.AddSeconds(2)], await credit.TakeAsync(3, now, CancellationToken.None));

        Assert.Equal(0, credit.Count);
        Assert.Equal(now.AddSeconds(3), await NextFreeAsync(store));
    }

    private static async Task<DateTimeOffset> NextFreeAsync(InMemoryBackend store) =>
        Assert.Single((await store.GetUsageAsync(CancellationToken.None)).Rates).NextFree;

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(10);
        }
    }
}
