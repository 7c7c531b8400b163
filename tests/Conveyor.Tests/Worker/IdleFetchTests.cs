using Conveyor.Testing;
using Conveyor.Tests.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Worker;

/// <summary>An idle worker's fetches: of the fetch loops woken by one ready notification, one takes it on and fetches,
/// the others wait on; a fetch that gets all it asked for after the queues ran dry wakes them all. Before, each task
/// that reached an idle worker cost three fetches (the one that found it, the empty one its loop makes straight after,
/// and the other loop's empty one): on PostgreSQL three statements, on Redis three script calls; now two.</summary>
public sealed class IdleFetchTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_idle_worker_fetches_once_for_each_task_it_is_woken_for_and_once_more_where_fewer_may_not_mean_none(bool shortFetchMeansEmpty)
    {
        var fetches = 0;
        using var host = Build((inner, fetched) => FetchObserver.Wrap(inner, fetched: fetched),
            fetched: _ => Interlocked.Increment(ref fetches), shortFetchMeansEmpty: shortFetchMeansEmpty);
        var ran = host.Services.GetRequiredService<Probe>();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<ITaskClient>();
            await client.EnqueueAsync(new TaskRequest(CountingTask.Name));
            await WaitUntilAsync(() => ran.Runs >= 1);
            // Settled: the first fetches (and the empty ones after the first task) are behind.
            await WaitUntilStableAsync(() => Volatile.Read(ref fetches));
            var before = Volatile.Read(ref fetches);

            const int Tasks = 20;
            for (var i = 2; i <= Tasks + 1; i++)
            {
                await client.EnqueueAsync(new TaskRequest(CountingTask.Name));
                await WaitUntilAsync(() => ran.Runs >= i);
                await WaitUntilStableAsync(() => Volatile.Read(ref fetches));
            }

            var perTask = (Volatile.Read(ref fetches) - before) / (double)Tasks;
            // One a task where a fetch that got fewer than it asked for means none left (Redis, SQLite, this in-memory
            // backend): the fetch that finds it. Two where it may not (PostgreSQL): that fetch and the empty one after it.
            // The other loop, woken by the same notification, fetches too only when it looks before the first loop's
            // fetch is under way, which a few may. Every loop fetching (the behaviour before) gives three.
            if (shortFetchMeansEmpty)
            {
                Assert.InRange(perTask, 0.9, 1.5);
            }
            else
            {
                Assert.InRange(perTask, 1.5, 2.5);
            }
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task A_batch_that_reaches_an_idle_worker_with_one_notification_is_fetched_by_both_fetch_loops()
    {
        var inFlight = 0;
        var most = 0;
        var fetches = 0;
        using var host = Build((inner, fetched) => FetchObserver.Wrap(inner, asked: async _ =>
        {
            Interlocked.Increment(ref fetches);
            InterlockedMax(ref most, Interlocked.Increment(ref inFlight));
            // Long enough for the other loop's fetch to overlap, if that loop fetches at all.
            await Task.Delay(20);
        }, returning: _ =>
        {
            // Before the answer reaches the worker: the loop cannot start its next fetch before this.
            Interlocked.Decrement(ref inFlight);
            return Task.CompletedTask;
        }), fetched: _ => { });
        var ran = host.Services.GetRequiredService<Probe>();
        await host.StartAsync();
        try
        {
            // Idle: the first fetches (and those of the wake-up once the subscription is in place) found nothing, and
            // none is in flight.
            await WaitUntilStableAsync(() => Volatile.Read(ref fetches));
            await WaitUntilAsync(() => Volatile.Read(ref inFlight) == 0);
            Volatile.Write(ref most, 0);

            // One enqueue, one notification: the loop that fetches first finds a full batch and wakes the other, which had
            // left the notification to it. Without that, the other loop would sit out the drain until FetchWait (2 min).
            // Handlers of 20 ms: slots come free while a fetch is in flight, so that a second loop, if it fetches at all,
            // overlaps it (with instant handlers one loop's fetch can take every free slot each time, and the loops take
            // turns without overlapping).
            await host.Services.GetRequiredService<ITaskClient>().EnqueueManyAsync(
                Enumerable.Range(0, 100).Select(_ => new TaskRequest(SlowTask.Name)).ToArray());
            await WaitUntilAsync(() => ran.Runs >= 100);
            Assert.Equal(2, Volatile.Read(ref most));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var seen = Volatile.Read(ref target);
        while (value > seen)
        {
            var was = Interlocked.CompareExchange(ref target, value, seen);
            if (was == seen)
            {
                return;
            }
            seen = was;
        }
    }

    /// <remarks>With one fetch loop the case is exact: only the wait taken before the held fetch, which the task's
    /// notification completed, can get the task run in time. With two, the other loop may take that notification on and
    /// run the task itself; the case then checks only that the task is not left to the fallback poll. The held fetch
    /// finds nothing, or one task of the four it asks for (a short fetch, after which the worker waits as after an empty
    /// one, since the in-memory backend says that fewer means none left).</remarks>
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    public async Task Work_made_ready_while_an_empty_or_short_fetch_is_in_flight_runs_at_once_not_at_the_fallback_poll(int fetchLoops, bool shortFetch)
    {
        var armed = 0;
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fetches = 0;
        using var host = Build((inner, fetched) => FetchObserver.Wrap(inner, fetched: fetched, returning: leases =>
        {
            // Once armed, the next fetch that found nothing (or one task) has read the store: its answer waits here.
            if (leases.Count == (shortFetch ? 1 : 0) && Volatile.Read(ref armed) == 1 && held.TrySetResult())
            {
                return hold.Task;
            }
            return Task.CompletedTask;
        }), fetched: _ => Interlocked.Increment(ref fetches), fetchLoops);
        var ran = host.Services.GetRequiredService<Probe>();
        await host.StartAsync();
        try
        {
            await WaitUntilAsync(() => Volatile.Read(ref fetches) >= fetchLoops);
            await WaitUntilStableAsync(() => Volatile.Read(ref fetches));
            Volatile.Write(ref armed, 1);
            var client = host.Services.GetRequiredService<ITaskClient>();
            if (shortFetch)
            {
                // One task: the fetch it wakes finds it (one of the four it asks for), and is held.
                await client.EnqueueAsync(new TaskRequest(CountingTask.Name));
            }
            else
            {
                // A wake-up with no work behind it: the fetches it starts find nothing, and the first is held.
                var notifier = host.Services.GetRequiredService<Backends.IConveyorBackend>().Notifier;
                await notifier.PublishAsync(Backends.NotifierChannels.Ready, "", CancellationToken.None);
            }
            await held.Task.WaitAsync(TimeSpan.FromSeconds(20));

            // Ready after that fetch read the store and before it returned.
            await client.EnqueueAsync(new TaskRequest(CountingTask.Name));
            await Task.Yield();
            hold.SetResult();

            // FetchWait is 2 minutes: only the task's notification gets it run within the deadline.
            var expected = shortFetch ? 2 : 1;
            await WaitUntilAsync(() => ran.Runs >= expected);
        }
        finally
        {
            hold.TrySetResult();
            await host.StopAsync();
        }
    }

    /// <summary>A worker of <paramref name="fetchLoops"/> fetch loops (default 2, as the worker's), four slots and a fallback poll far beyond the tests' deadlines,
    /// whose queue role is wrapped by <paramref name="wrap"/>.</summary>
    private static IHost Build(Func<Backends.IQueueBackend, Action<IReadOnlyList<Backends.Lease>>, Backends.IQueueBackend> wrap,
        Action<IReadOnlyList<Backends.Lease>> fetched, int fetchLoops = 2, bool shortFetchMeansEmpty = true)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Probe>();
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 2;
                o.Worker.Prefetch = 4;
                o.Worker.FetchConcurrency = fetchLoops;
                o.Worker.FetchWait = TimeSpan.FromMinutes(2);
            })
            .AddTask<CountingTask>(CountingTask.Name)
            .AddTask<SlowTask>(SlowTask.Name)
            .UseInMemoryBackend()
            .UseBackend(sp =>
            {
                var inner = sp.GetRequiredService<InMemoryBackend>();
                // The in-memory backend says that a short fetch means none left; false makes the worker act as on PostgreSQL.
                return new WatchedBackend(inner, wrap(inner.Queue, fetched),
                    capabilities: inner.Capabilities with { ShortFetchMeansEmpty = shortFetchMeansEmpty });
            });
        return builder.Build();
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 20 s");
            await Task.Delay(5);
        }
    }

    /// <summary>Waits until <paramref name="read"/> has not changed for 100 ms.</summary>
    private static async Task WaitUntilStableAsync(Func<int> read)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        var last = read();
        var since = DateTime.UtcNow;
        while (DateTime.UtcNow - since < TimeSpan.FromMilliseconds(100))
        {
            Assert.True(DateTime.UtcNow < deadline, "still changing after 20 s");
            await Task.Delay(5);
            var now = read();
            if (now != last)
            {
                last = now;
                since = DateTime.UtcNow;
            }
        }
    }
}
