using System.Collections.Concurrent;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Worker;

/// <summary>A worker with a deep prefetch buffer refills it by batches (issue 15): while the leases waiting to start still
/// cover a fetch's round trip, the slots that ending handlers free are gathered into the next fetch instead of each
/// making a fetch of its own. A fetch costs an engine about as much per statement as for dozens of rows (PostgreSQL).</summary>
public sealed class FetchBatchTests
{
    [Fact]
    public async Task Slots_freed_one_at_a_time_are_fetched_by_half_buffers_not_one_by_one()
    {
        using var gate = new HandlerGate();
        var fetches = new ConcurrentQueue<int>();
        // 40 leases beyond the handlers: refilled by 20 once 20 or fewer wait.
        using var host = await StartWorkerAsync(prefetch: 42, queued: 300, gate, fetches);
        try
        {
            await gate.WaitForStartsAsync(2);
            Assert.Equal([42], fetches.ToArray());

            // Handlers end one at a time; each frees one slot.
            await EndOneAtATimeAsync(gate, 1, 100);

            var later = fetches.Skip(1).ToArray();
            // 100 slots freed, fetched by 20 or so (a slot may be counted while its handler takes its next lease).
            Assert.InRange(later.Length, 3, 8);
            Assert.All(later, asked => Assert.InRange(asked, 15, 42));
        }
        finally
        {
            gate.Open();
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task A_buffer_of_about_one_lease_per_handler_fetches_as_slots_free()
    {
        using var gate = new HandlerGate();
        var fetches = new ConcurrentQueue<int>();
        using var host = await StartWorkerAsync(prefetch: 3, queued: 20, gate, fetches);
        try
        {
            await gate.WaitForStartsAsync(2);
            for (var i = 1; i <= 6; i++)
            {
                gate.Release(1);
                await gate.WaitForStartsAsync(2 + i);
                // The lease that the freed handler took is replaced at once.
                await WaitUntilAsync(() => fetches.Count >= i + 1);
            }
            Assert.All(fetches.Skip(1), asked => Assert.Equal(1, asked));
        }
        finally
        {
            gate.Open();
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task Slots_asked_for_by_a_fetch_in_flight_count_as_covered()
    {
        using var gate = new HandlerGate();
        var fetches = new ConcurrentQueue<int>();
        var slowFetches = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var host = await StartWorkerAsync(prefetch: 42, queued: 300, gate, fetches, () => slowFetches.Task);
        try
        {
            await gate.WaitForStartsAsync(2);
            // 20 handlers' ends: the second fetch asks for about 20, and is held in flight.
            await EndOneAtATimeAsync(gate, 1, 20);
            await WaitUntilAsync(() => fetches.Count >= 2);

            // 20 more while it is held: the waiting leases fall from 20 to none, but with the 20 it asked for they cover
            // the next fetch's round trip until the end, so the next fetch gathers these 20 slots, not the first one.
            await EndOneAtATimeAsync(gate, 21, 40);
            await WaitUntilAsync(() => fetches.Count >= 3);

            var asked = fetches.ToArray();
            Assert.InRange(asked[1], 15, 42);
            Assert.InRange(asked[2], 15, 42);
        }
        finally
        {
            slowFetches.TrySetResult();
            gate.Open();
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task Once_the_stop_begins_handlers_start_nothing_more_from_the_buffer_while_a_fetch_is_in_flight()
    {
        using var gate = new HandlerGate();
        var fetches = new ConcurrentQueue<int>();
        var slowFetches = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var host = await StartWorkerAsync(prefetch: 42, queued: 300, gate, fetches, () => slowFetches.Task);
        var status = host.Services.GetRequiredService<WorkerStatus>();
        try
        {
            await gate.WaitForStartsAsync(2);
            await EndOneAtATimeAsync(gate, 1, 20);
            // The second fetch is held in flight, so the fetch loops cannot end and the drain cannot begin; 20 leases wait
            // in the buffer and 2 handlers run.
            await WaitUntilAsync(() => fetches.Count >= 2);

            // As a recycle or a signal does: the worker stops fetching, before the host gets round to stopping it.
            var stopping = WorkerStop.StopFetchingAsync(host.Services, status);
            gate.Open();
            await WaitUntilAsync(() => status.Processed >= 22);
            slowFetches.TrySetResult();
            await stopping;
            await host.StopAsync();

            // The two running finished; nothing else started, and what waited went back unspent.
            Assert.Equal(22, gate.Starts);
            var counts = (await host.Services.GetRequiredService<Backends.IConveyorBackend>().Store.GetQueuesAsync(CancellationToken.None)).Single().Counts;
            Assert.Equal(22, counts.GetValueOrDefault(TaskState.Succeeded));
            Assert.Equal(278, counts.GetValueOrDefault(TaskState.Queued));
        }
        finally
        {
            slowFetches.TrySetResult();
            gate.Open();
            await host.StopAsync();
        }
    }

    /// <summary>A started worker of two handlers with a fixed prefetch over <paramref name="queued"/> gated tasks, whose
    /// fetches record how many leases each asked for and, after the first, wait for <paramref name="fetchAfter"/>.</summary>
    private static async Task<IHost> StartWorkerAsync(int prefetch, int queued, HandlerGate gate, ConcurrentQueue<int> fetches, Func<Task>? fetchAfter = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(gate);
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 2;
                o.Worker.Prefetch = prefetch;
            })
            .AddTask<GatedTask>(GatedTask.Name)
            .UseInMemoryBackend()
            .UseBackend(sp =>
            {
                var inner = sp.GetRequiredService<InMemoryBackend>();
                return new WatchedBackend(inner, FetchObserver.Wrap(inner.Queue, asked: request =>
                {
                    fetches.Enqueue(request.MaxCount);
                    return fetches.Count > 1 && fetchAfter is not null ? fetchAfter() : Task.CompletedTask;
                }));
            });
        var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < queued; i++)
        {
            await client.EnqueueAsync(new TaskRequest(GatedTask.Name));
        }
        await host.StartAsync();
        return host;
    }

    /// <summary>Ends the handlers running, one at a time: each next only once a handler started in the freed slot (the
    /// two handlers started first, then one per end).</summary>
    private static async Task EndOneAtATimeAsync(HandlerGate gate, int first, int last)
    {
        for (var i = first; i <= last; i++)
        {
            gate.Release(1);
            await gate.WaitForStartsAsync(2 + i);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 10 s");
            await Task.Delay(5);
        }
    }

    /// <summary>Holds each handler until the test releases it; counts the handlers that started.</summary>
    private sealed class HandlerGate : IDisposable
    {
        private readonly SemaphoreSlim _release = new(0, int.MaxValue);
        private volatile bool _open;
        private int _starts;

        public void Release(int count) => _release.Release(count);

        public void Open()
        {
            _open = true;
            _release.Release(1000);
        }

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _starts);
            if (!_open)
            {
                await _release.WaitAsync(cancellationToken);
            }
        }

        public int Starts => Volatile.Read(ref _starts);

        public Task WaitForStartsAsync(int count) => WaitUntilAsync(() => Volatile.Read(ref _starts) >= count);

        public void Dispose() => _release.Dispose();
    }

    private sealed class GatedTask(HandlerGate gate) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.fetch-batch";

        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => gate.RunAsync(cancellationToken);
    }
}
