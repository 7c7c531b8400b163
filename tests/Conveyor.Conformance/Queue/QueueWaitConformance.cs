using System.Collections.Concurrent;
using System.Diagnostics;

namespace Conveyor.Conformance;

/// <summary>
/// Queue role on the system clock: fetches that wait for work, and many consumers at once.
/// Bounds on time are generous (seconds where milliseconds are expected), so a busy machine cannot fail them.
/// </summary>
public abstract class QueueWaitConformance : ConformanceTest
{
    private static readonly TimeSpan LongWait = TimeSpan.FromSeconds(30);

    /// <summary>Runs on the system clock: waits are real.</summary>
    protected QueueWaitConformance() : base(TimeProvider.System)
    {
    }

    [Fact]
    public async Task Fetch_with_MaxWait_wakes_promptly_when_a_message_is_enqueued()
    {
        var fetch = Queue.FetchAsync(Request(10) with { MaxWait = LongWait }, Timeout);
        // Give the fetch time to find nothing and start waiting; the test holds whether or not it has.
        await Task.Delay(TimeSpan.FromMilliseconds(200));
        Assert.False(fetch.IsCompleted, "a fetch with nothing ready returned before its wait ended");
        var message = NewMessage();
        var enqueuedAt = Stopwatch.StartNew();

        await EnqueueAsync(message);

        var leases = await fetch.WaitAsync(LongWait / 3);
        Assert.Equal(message.Id, Assert.Single(leases).Message.Id);
        Assert.True(enqueuedAt.Elapsed < LongWait / 3, $"woke after {enqueuedAt.Elapsed}");
    }

    [Fact]
    public async Task Fetch_with_MaxWait_wakes_when_a_message_is_released()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        var fetch = Queue.FetchAsync(Request(10) with { MaxWait = LongWait }, Timeout);

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        var leases = await fetch.WaitAsync(LongWait / 3);
        Assert.Equal(lease.Message.Id, Assert.Single(leases).Message.Id);
    }

    [Fact]
    public async Task Fetch_with_MaxWait_wakes_when_its_queue_is_resumed()
    {
        await Queue.PauseQueueAsync(QueueNames.Default, Timeout);
        await EnqueueAsync(NewMessage());
        var fetch = Queue.FetchAsync(Request(10) with { MaxWait = LongWait }, Timeout);

        await Queue.ResumeQueueAsync(QueueNames.Default, Timeout);

        Assert.Single(await fetch.WaitAsync(LongWait / 3));
    }

    [Fact]
    public async Task Fetch_with_MaxWait_returns_nothing_when_the_wait_ends()
    {
        var wait = TimeSpan.FromMilliseconds(300);
        var clock = Stopwatch.StartNew();

        var leases = await Queue.FetchAsync(Request(10) with { MaxWait = wait }, Timeout);

        Assert.Empty(leases);
        // Lower bound only, with a margin for clocks of different resolution.
        Assert.True(clock.Elapsed >= wait - TimeSpan.FromMilliseconds(50), $"returned after {clock.Elapsed}");
    }

    [Fact]
    public async Task Fetch_with_MaxWait_returns_at_once_when_a_message_is_ready()
    {
        await EnqueueAsync(NewMessage());

        var leases = await Queue.FetchAsync(Request(10) with { MaxWait = LongWait }, Timeout).WaitAsync(LongWait / 3);

        Assert.Single(leases);
    }

    [Fact]
    public async Task Waiting_fetch_ends_when_its_token_is_cancelled()
    {
        using var cancel = new CancellationTokenSource();
        var fetch = Queue.FetchAsync(Request(10) with { MaxWait = LongWait }, cancel.Token);

        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fetch.WaitAsync(LongWait / 3));
    }

    [Fact]
    public async Task Waiting_fetch_ignores_messages_of_other_queues()
    {
        var fetch = Queue.FetchAsync(Request(10, "a") with { MaxWait = TimeSpan.FromMilliseconds(500) }, Timeout);

        await EnqueueAsync(NewMessage("b"));

        Assert.Empty(await fetch.WaitAsync(LongWait));
        Assert.Single(await FetchAsync(10, "b"));
    }

    [Fact]
    public async Task Concurrent_consumers_together_receive_every_message_exactly_once()
    {
        const int total = 2000;
        const int consumers = 8;
        var ids = new HashSet<Guid>();
        for (var i = 0; i < total; i += 500)
        {
            ids.UnionWith(await EnqueueManyAsync(500));
        }
        var received = new ConcurrentDictionary<Guid, int>();
        var duplicates = new ConcurrentBag<Guid>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(50);

        async Task ConsumeAsync(int consumer)
        {
            var request = Request(16) with { WorkerId = $"worker-{consumer}", MaxWait = TimeSpan.FromMilliseconds(100) };
            while (received.Count < total && DateTime.UtcNow < deadline)
            {
                var leases = await Queue.FetchAsync(request, Timeout);
                foreach (var lease in leases)
                {
                    if (!received.TryAdd(lease.Message.Id, consumer))
                    {
                        duplicates.Add(lease.Message.Id);
                    }
                }
                if (leases.Count > 0)
                {
                    await Queue.CompleteAsync(leases.Select(l => Completion(l, CompletionKind.Succeeded)).ToList(), Timeout);
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, consumers).Select(c => Task.Run(() => ConsumeAsync(c))));

        Assert.Empty(duplicates);
        Assert.Equal(total, received.Count);
        Assert.True(ids.SetEquals(received.Keys));
        Assert.True(received.Values.Distinct().Count() > 1, "one consumer took every message");
        var stats = (await Store.GetQueuesAsync(Timeout)).Single();
        Assert.Equal(total, stats.Count(TaskState.Succeeded));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Concurrent_consumers_never_hold_the_same_message()
    {
        const int total = 400;
        await EnqueueManyAsync(total);
        var held = new ConcurrentDictionary<Guid, long>();
        var overlaps = new ConcurrentBag<Guid>();
        var finished = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(50);

        async Task ConsumeAsync(int consumer)
        {
            var request = Request(4) with { WorkerId = $"worker-{consumer}", MaxWait = TimeSpan.FromMilliseconds(100) };
            while (Volatile.Read(ref finished) < total && DateTime.UtcNow < deadline)
            {
                var leases = await Queue.FetchAsync(request, Timeout);
                foreach (var lease in leases)
                {
                    if (!held.TryAdd(lease.Message.Id, lease.Token))
                    {
                        overlaps.Add(lease.Message.Id);
                    }
                }
                await Task.Yield();
                // Hand back about half the messages, so that they are fetched again by any consumer.
                var release = leases.Where(_ => Random.Shared.Next(2) == 0).ToList();
                var complete = leases.Except(release).ToList();
                // Forget them before they are handed back or settled: only then may another consumer take them.
                foreach (var lease in leases)
                {
                    held.TryRemove(lease.Message.Id, out _);
                }
                await Queue.ReleaseAsync(release.Select(l => l.Ref).ToList(), Timeout);
                await Queue.CompleteAsync(complete.Select(l => Completion(l, CompletionKind.Succeeded)).ToList(), Timeout);
                Interlocked.Add(ref finished, complete.Count);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 8).Select(c => Task.Run(() => ConsumeAsync(c))));

        Assert.Empty(overlaps);
        Assert.Equal(total, finished);
        Assert.Equal(total, (await Store.GetQueuesAsync(Timeout)).Single().Count(TaskState.Succeeded));
    }
}
