using System.Collections.Concurrent;
using System.Diagnostics;

namespace Conveyor.Conformance;

/// <summary>
/// Queue role on the system clock: many consumers at once. (A fetch never waits: workers wait on the notifier's ready
/// notifications, which <see cref="NotifierConformance{TFactory}"/> checks.)
/// Bounds on time are generous (seconds where milliseconds are expected), so a busy machine cannot fail them.
/// </summary>
public abstract class QueueWaitConformance<TFactory> : ConformanceTest
    where TFactory : IConformanceBackendFactory, new()
{
    /// <summary>Runs on the system clock: waits are real.</summary>
    protected QueueWaitConformance() : base(new TFactory(), TimeProvider.System)
    {
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
            var request = Request(16) with { WorkerId = $"worker-{consumer}" };
            while (received.Count < total && DateTime.UtcNow < deadline)
            {
                var leases = await Queue.FetchAsync(request, Timeout);
                if (leases.Count == 0)
                {
                    // Another consumer holds what is left; its completions make more ready soon.
                    await Task.Delay(10);
                }
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
            var request = Request(4) with { WorkerId = $"worker-{consumer}" };
            while (Volatile.Read(ref finished) < total && DateTime.UtcNow < deadline)
            {
                var leases = await Queue.FetchAsync(request, Timeout);
                if (leases.Count == 0)
                {
                    await Task.Delay(10);
                }
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
