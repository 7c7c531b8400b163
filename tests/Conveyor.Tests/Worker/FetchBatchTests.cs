using System.Collections.Concurrent;
using Conveyor.Backends;
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
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(gate);
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 2;
                // 40 leases beyond the handlers: refilled by 20 once 20 or fewer wait.
                o.Worker.Prefetch = 42;
            })
            .AddTask<GatedTask>(GatedTask.Name)
            .UseInMemoryBackend()
            .UseBackend(sp => new CountingBackend(sp.GetRequiredService<InMemoryBackend>(), fetches));
        using var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < 300; i++)
        {
            await client.EnqueueAsync(new TaskRequest(GatedTask.Name));
        }
        await host.StartAsync();
        try
        {
            await gate.WaitForStartsAsync(2);
            Assert.Equal([42], fetches.ToArray());

            // Handlers end one at a time; each frees one slot.
            for (var i = 1; i <= 100; i++)
            {
                gate.Release(1);
                await gate.WaitForStartsAsync(2 + i);
            }

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
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(gate);
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 2;
                o.Worker.Prefetch = 3;
            })
            .AddTask<GatedTask>(GatedTask.Name)
            .UseInMemoryBackend()
            .UseBackend(sp => new CountingBackend(sp.GetRequiredService<InMemoryBackend>(), fetches));
        using var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < 20; i++)
        {
            await client.EnqueueAsync(new TaskRequest(GatedTask.Name));
        }
        await host.StartAsync();
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

        public Task WaitForStartsAsync(int count) => WaitUntilAsync(() => Volatile.Read(ref _starts) >= count);

        public void Dispose() => _release.Dispose();
    }

    private sealed class GatedTask(HandlerGate gate) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.fetch-batch";

        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => gate.RunAsync(cancellationToken);
    }

    /// <summary>The in-memory backend, whose fetches record the number of leases each asked for.</summary>
    private sealed class CountingBackend(IConveyorBackend inner, ConcurrentQueue<int> fetches) : IConveyorBackend
    {
        public string Name => inner.Name;
        public IQueueBackend Queue { get; } = FetchCounter.Wrap(inner.Queue, fetches);
        public ITaskStore Store => inner.Store;
        public ICoordinationBackend Coordination => inner.Coordination;
        public IScheduleStore Schedules => inner.Schedules;
        public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;
        public INotifier Notifier => inner.Notifier;
        public ILimitStore Limits => inner.Limits;
        public IWorkflowStore? Workflows => inner.Workflows;
        public BackendCapabilities Capabilities => inner.Capabilities;
        public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);
        public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => inner.CheckHealthAsync(cancellationToken);
    }

    /// <summary>The queue role as it is, except that each fetch records its <see cref="FetchRequest.MaxCount"/>.</summary>
    public class FetchCounter : System.Reflection.DispatchProxy
    {
        private IQueueBackend _inner = null!;
        private ConcurrentQueue<int> _fetches = null!;

        internal static IQueueBackend Wrap(IQueueBackend inner, ConcurrentQueue<int> fetches)
        {
            var proxy = Create<IQueueBackend, FetchCounter>();
            var counter = (FetchCounter)(object)proxy;
            counter._inner = inner;
            counter._fetches = fetches;
            return proxy;
        }

        protected override object? Invoke(System.Reflection.MethodInfo? targetMethod, object?[]? args)
        {
            if (targetMethod!.Name == nameof(IQueueBackend.FetchAsync) && args?[0] is FetchRequest request)
            {
                _fetches.Enqueue(request.MaxCount);
            }
            try
            {
                return targetMethod.Invoke(_inner, args);
            }
            catch (System.Reflection.TargetInvocationException ex) when (ex.InnerException is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
                throw;
            }
        }
    }
}
