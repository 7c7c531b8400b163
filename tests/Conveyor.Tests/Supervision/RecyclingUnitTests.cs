using System.Collections.Concurrent;
using Conveyor.Backends;
using Conveyor.Testing;
using Conveyor.Tests.Engine;
using Conveyor.Tests.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Supervision;

/// <summary>A worker recycled by task count runs exactly its count (Celery's max tasks per child): its handlers start
/// nothing beyond it, however fast the tasks end and however full its prefetch buffer, and the rest go back unspent.</summary>
public sealed class RecyclingUnitTests
{
    [Fact]
    public async Task A_worker_recycled_at_ten_tasks_runs_ten_and_hands_back_the_rest_unspent()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        var runs = new Probe();
        builder.Services.AddSingleton(runs);
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 4;
                o.Worker.Prefetch = 64;
                o.Worker.MaxTasksPerChild = 10;
            })
            .AddTask<CountingTask>(CountingTask.Name)
            .UseInMemoryBackend();
        using var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < 200; i++)
        {
            await client.EnqueueAsync(new TaskRequest(CountingTask.Name));
        }
        var exitCode = Environment.ExitCode;
        try
        {
            await host.StartAsync();
            // The recycler stops the host once ten have finished.
            await host.WaitForShutdownAsync().WaitAsync(TimeSpan.FromSeconds(30));

            Assert.Equal(10, runs.Runs);
            var counts = (await host.Services.GetRequiredService<IConveyorBackend>().Store.GetQueuesAsync(CancellationToken.None)).Single().Counts;
            Assert.Equal(10, counts.GetValueOrDefault(TaskState.Succeeded));
            Assert.Equal(190, counts.GetValueOrDefault(TaskState.Queued));
            var page = await host.Services.GetRequiredService<IConveyorBackend>().Store.ListAsync(new TaskQuery { State = TaskState.Queued, Limit = 200 }, CancellationToken.None);
            Assert.Equal(190, page.Items.Count);
            Assert.All(page.Items, t => Assert.Equal(0, t.Attempts));
        }
        finally
        {
            // Outside a supervisor, a recycled process exits 75 for systemd to restart it: not this test's process.
            Environment.ExitCode = exitCode;
        }
    }

    [Fact]
    public async Task At_its_count_a_worker_hands_back_the_leases_it_refused_at_once_so_a_lost_attempts_place_is_filled()
    {
        await using var host = new EngineHost(c => c.AddTask<GatedTask>(GatedTask.Name), o =>
        {
            // A handler more than the count: free, it takes the buffered leases and refuses them.
            o.Worker.Concurrency = 3;
            o.Worker.Prefetch = 8;
            o.Worker.MaxTasksPerChild = 2;
        });
        var exitCode = Environment.ExitCode;
        try
        {
            var tasks = new List<Guid>();
            for (var i = 0; i < 6; i++)
            {
                tasks.Add((await host.Client.EnqueueAsync(GatedTask.Name)).Id);
            }
            await host.StartAsync();
            await WaitUntilAsync(() => host.Probe.Runs == 2, "two attempts to start");

            // The count is taken: the four others go back queued and unspent now, not when the worker drains.
            await host.WaitForQueueAsync(q => q.Counts.GetValueOrDefault(TaskState.Queued) == 4, "four tasks queued while two run");

            // One started attempt's lease is lost (taken back, as a supervisor does for a worker it takes for gone).
            var status = host.Services.GetRequiredService<WorkerStatus>();
            // Its task is queued again at once, as a redelivery: another worker takes it (usually before this one hears
            // of its loss at the next heartbeat; if this one takes it, the test still holds, and only proves less).
            var other = Assert.Single(await LoseToAnotherWorkerAsync(host, status.RunningTasks.First().Lease));

            // Its place at the count goes to a task that was queued: a third attempt starts, and the worker recycles at two.
            await WaitUntilAsync(() => host.Probe.Runs == 3, "a third attempt to start in the lost one's place");
            host.Probe.Gate.TrySetResult();
            await host.WaitForQueueAsync(q => q.Counts.GetValueOrDefault(TaskState.Succeeded) == 2, "two tasks succeeded");
            await WaitUntilAsync(() => status.Recycling && !status.IsRunning, "the worker to recycle and stop");

            var records = new List<TaskRecord>();
            foreach (var id in tasks)
            {
                records.Add((await host.Client.GetAsync(id))!);
            }
            Assert.Equal(TaskState.Running, records.Single(r => r.Id == other.Message.Id).State);
            Assert.Equal(2, records.Count(r => r.State == TaskState.Succeeded));
            Assert.All(records.Where(r => r.State == TaskState.Queued), r => Assert.Equal(0, r.Attempts));
            Assert.Equal(3, records.Count(r => r.State == TaskState.Queued));
            Assert.Equal(3, host.Probe.Runs);
        }
        finally
        {
            Environment.ExitCode = exitCode;
        }
    }

    [Fact]
    public async Task A_lease_handed_back_unstarted_at_its_count_is_not_reported_lost_by_a_heartbeat_that_took_it_before()
    {
        var logs = new CapturingLoggerProvider();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton<ILoggerProvider>(logs);
            c.AddTask<GatedTask>(GatedTask.Name);
        }, o =>
        {
            // As many handlers as the count: the two leases beyond it wait in the buffer until the handlers end.
            o.Worker.Concurrency = 2;
            o.Worker.Prefetch = 4;
            o.Worker.MaxTasksPerChild = 2;
        }, backend: inner => new WatchedBackend(inner, ExtensionGate.Wrap(inner.Queue)));
        var exitCode = Environment.ExitCode;
        try
        {
            for (var i = 0; i < 4; i++)
            {
                await host.Client.EnqueueAsync(GatedTask.Name);
            }
            await host.StartAsync();
            await WaitUntilAsync(() => host.Probe.Runs == 2, "two attempts to start");
            await host.WaitForQueueAsync(q => q.Counts.GetValueOrDefault(TaskState.Queued) == 0, "the two others leased, waiting in the buffer");

            // A heartbeat takes the four leases to extend, and its extension is held (one whose snapshot was taken before
            // the worker held all four goes through).
            var gate = (ExtensionGate)(object)host.Services.GetRequiredService<IConveyorBackend>().Queue;
            gate.Arm(4);
            await gate.Entered.Task.WaitAsync(TimeSpan.FromSeconds(20));

            // Meanwhile the handlers end: at the count the two waiting go back unstarted (refused, or by the drain when
            // the recycler's stop comes first).
            host.Probe.Gate.TrySetResult();
            await host.WaitForQueueAsync(q => q.Counts.GetValueOrDefault(TaskState.Queued) == 2, "the two waiting handed back");

            // Then the extension reaches the backend, which no longer has them leased to this worker.
            gate.Release.TrySetResult();
            var answer = await gate.Answered.Task.WaitAsync(TimeSpan.FromSeconds(20));
            var status = host.Services.GetRequiredService<WorkerStatus>();
            await WaitUntilAsync(() => status.Recycling && !status.IsRunning, "the worker to recycle and stop");

            var queued = (await host.Backend.ListAsync(new TaskQuery { State = TaskState.Queued, Limit = 10 }, CancellationToken.None)).Items;
            Assert.Equal(2, queued.Count);
            Assert.All(queued, t => Assert.Equal(0, t.Attempts));
            Assert.Equal(2, answer.Lost.Count(l => queued.Any(t => t.Id == l.TaskId)));
            // Handed back, not lost: no handler was stopped and nothing is to be reported.
            Assert.DoesNotContain(logs.Entries, e => e.Message.Contains("was lost", StringComparison.Ordinal));
            Assert.Equal(2, host.Probe.Runs);
        }
        finally
        {
            Environment.ExitCode = exitCode;
        }
    }

    [Fact]
    public async Task At_its_count_a_worker_fetches_nothing_more_until_a_started_attempt_is_given_back()
    {
        using var steps = new StepGate();
        var fetched = new ConcurrentQueue<int>();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton(steps);
            c.AddTask<StepTask>(StepTask.Name);
        }, o =>
        {
            // As many handlers and prefetch slots as the count: the first fetch takes the three that start, and each
            // handler's end then frees a slot while the count is taken.
            o.Worker.Concurrency = 3;
            o.Worker.Prefetch = 3;
            o.Worker.MaxTasksPerChild = 3;
        }, backend: inner => new WatchedBackend(inner, FetchObserver.Wrap(inner.Queue, fetched: leases => fetched.Enqueue(leases.Count))));
        var exitCode = Environment.ExitCode;
        try
        {
            for (var i = 0; i < 10; i++)
            {
                await host.Client.EnqueueAsync(StepTask.Name);
            }
            await host.StartAsync();
            await WaitUntilAsync(() => steps.Starts == 3, "three attempts to start");

            // Two handlers end, one at a time, each once its outcome is stored: their slots are free, but no attempt may
            // start, so the worker fetches no lease for them (to hand it back).
            var status = host.Services.GetRequiredService<WorkerStatus>();
            for (var ended = 1; ended <= 2; ended++)
            {
                steps.Release();
                await host.WaitForQueueAsync(q => q.Counts.GetValueOrDefault(TaskState.Succeeded) == ended, $"{ended} succeeded");
            }
            Assert.Equal(3, fetched.Sum());

            // The running attempt's lease is lost (taken back, and taken by another worker): its place at the count is
            // given back, and the worker fetches again for it.
            var lost = status.RunningTasks.Single().Lease;
            Assert.Equal(lost.Message.Id, Assert.Single(await LoseToAnotherWorkerAsync(host, lost)).Message.Id);
            await WaitUntilAsync(() => steps.Starts == 4, "a fourth attempt to start in the lost one's place");
            steps.Release();
            await WaitUntilAsync(() => status.Recycling && !status.IsRunning, "the worker to recycle and stop");

            var counts = (await host.Backend.GetQueuesAsync(CancellationToken.None)).Single().Counts;
            Assert.Equal(3, counts.GetValueOrDefault(TaskState.Succeeded));
            Assert.Equal(1, counts.GetValueOrDefault(TaskState.Running));
            Assert.Equal(6, counts.GetValueOrDefault(TaskState.Queued));
        }
        finally
        {
            Environment.ExitCode = exitCode;
        }
    }

    /// <summary>Takes a started attempt's lease back, as a supervisor does for a worker it takes for gone, and lets
    /// "another-worker" fetch from the queue (the redelivery, queued again at once); returns what it fetched.</summary>
    private static async Task<IReadOnlyList<Lease>> LoseToAnotherWorkerAsync(EngineHost host, Lease lease)
    {
        Assert.Equal(1, (await host.Backend.ReleaseAsync([lease.Ref], CancellationToken.None)).Count);
        return await host.Backend.FetchAsync(new FetchRequest
        {
            WorkerId = "another-worker",
            Queues = [new QueueWeight(QueueNames.Default)],
            MaxCount = 1,
            LeaseDuration = TimeSpan.FromMinutes(5),
        }, CancellationToken.None);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(20);
        }
    }

    /// <summary>Holds each <see cref="StepTask"/> handler until the test lets one end; counts those that started.</summary>
    private sealed class StepGate : IDisposable
    {
        private readonly SemaphoreSlim _ends = new(0, int.MaxValue);
        private int _starts;

        public int Starts => Volatile.Read(ref _starts);

        /// <summary>Lets one handler end.</summary>
        public void Release() => _ends.Release();

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _starts);
            await _ends.WaitAsync(cancellationToken);
        }

        public void Dispose() => _ends.Dispose();
    }

    private sealed class StepTask(StepGate steps) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.recycle-step";

        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => steps.RunAsync(cancellationToken);
    }
}
