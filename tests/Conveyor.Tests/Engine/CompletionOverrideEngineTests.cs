using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Reflection;
using Conveyor.Backends;
using Conveyor.Tests.Worker;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Engine;

/// <summary>The worker raises the event of what the backend did with a completion (<see cref="Backends.CompletionOverride"/>),
/// not of what it asked: a retry the backend cancelled raises <see cref="TaskEventKind.Cancelled"/>, and a completion it
/// ignored raises nothing.</summary>
public sealed class CompletionOverrideEngineTests
{
    /// <summary>Heartbeats (which bring cancel requests and lost leases to the worker) far apart: the test decides what the
    /// worker has not heard of yet when its handler ends.</summary>
    private static void RareHeartbeats(ConveyorOptions o)
    {
        o.Worker.HeartbeatInterval = TimeSpan.FromMinutes(1);
        o.Worker.LeaseDuration = TimeSpan.FromMinutes(5);
    }

    [Fact]
    public async Task A_retry_whose_cancel_was_asked_while_it_ran_raises_the_cancelled_event_and_no_retrying_one()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        await using var host = new EngineHost(c =>
        {
            c.AddTask<FailsAtTheGateTask>(FailsAtTheGateTask.Name);
            c.OnTaskEvent(events.Enqueue);
        }, RareHeartbeats);
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(FailsAtTheGateTask.Name, options: new EnqueueOptions { MaxAttempts = 3 });
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));

        // The cancel reaches the backend, not the worker (no heartbeat before the handler ends); the handler then fails with
        // attempts left, so the worker asks for a retry, which the backend turns into the cancel.
        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(result.Id));
        host.Probe.Gate.TrySetResult();
        await host.WaitForStateAsync(result.Id, TaskState.Cancelled);
        await WaitUntilAsync(() => events.Any(e => e.TaskId == result.Id && e.Kind is TaskEventKind.Cancelled or TaskEventKind.Retrying));

        var ofTask = events.Where(e => e.TaskId == result.Id).ToList();
        // Enqueued is raised once the enqueue returns, which the worker's start may precede: the order holds from Started on.
        Assert.Single(ofTask, e => e.Kind == TaskEventKind.Enqueued);
        Assert.Equal([TaskEventKind.Started, TaskEventKind.Cancelled], ofTask.Where(e => e.Kind != TaskEventKind.Enqueued).Select(e => e.Kind));
        var cancelled = Assert.Single(ofTask, e => e.Kind == TaskEventKind.Cancelled);
        Assert.Equal(TaskState.Cancelled, cancelled.State);
        Assert.Equal(1, cancelled.Attempt);
        Assert.Null(cancelled.RetryAt);
        Assert.Equal("attempt 1 failed at the gate", cancelled.Error?.Message);
        Assert.Equal(host.Services.GetRequiredService<WorkerStatus>().WorkerId, cancelled.WorkerId);
        Assert.Equal(1, host.Probe.Runs);
    }

    [Fact]
    public async Task A_retry_whose_cancel_was_asked_while_it_ran_counts_as_cancelled_when_only_the_metrics_listen()
    {
        // No observer and no subscriber: the worker records the metrics without building events.
        await using var host = new EngineHost(c => c.AddTask<FailsAtTheGateTask>(FailsAtTheGateTask.Name), RareHeartbeats);
        var factory = host.Services.GetRequiredService<IMeterFactory>();
        var counts = new ConcurrentQueue<(string Name, long Value)>();
        using var listener = new MeterListener
        {
            // This host's meter only: other tests' hosts run in parallel with meters of the same name.
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == ConveyorDiagnostics.Name && ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => counts.Enqueue((i.Name, v)));
        listener.Start();
        await host.StartAsync();
        // Events are not built: the worker takes the metrics-only path.
        var bus = host.Services.GetRequiredService<TaskEventBus>();
        Assert.True(bus.IsObserved);
        Assert.False(bus.HasSubscribers);
        var result = await host.Client.EnqueueAsync(FailsAtTheGateTask.Name, options: new EnqueueOptions { MaxAttempts = 3 });
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(result.Id));
        host.Probe.Gate.TrySetResult();
        await host.WaitForStateAsync(result.Id, TaskState.Cancelled);
        long Collected(string name)
        {
            counts.Clear();
            listener.RecordObservableInstruments();
            return counts.Where(c => c.Name == name).Sum(c => c.Value);
        }
        await WaitUntilAsync(() => Collected(ConveyorMetricNames.TasksCancelled) + Collected(ConveyorMetricNames.TasksRetried) > 0);

        Assert.Equal(1, Collected(ConveyorMetricNames.TasksCancelled));
        Assert.Equal(0, Collected(ConveyorMetricNames.TasksRetried));
        Assert.Equal(0, Collected(ConveyorMetricNames.TasksFailed));
    }

    [Fact]
    public async Task A_completion_of_a_lease_taken_back_before_it_was_written_raises_no_event()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        await using var host = new EngineHost(c =>
        {
            c.AddTask<StubbornTask>(StubbornTask.Name);
            c.OnTaskEvent(events.Enqueue);
        }, RareHeartbeats);
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(StubbornTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await WaitUntilAsync(() => host.Backend.IsAttemptStarted(result.Id));

        // The lease ends behind the worker's back (a supervisor took it for gone); no heartbeat tells it before its handler
        // succeeds, so it writes the success of a lease no longer held, which the backend ignores. The task runs again.
        var workerId = host.Services.GetRequiredService<WorkerStatus>().WorkerId;
        Assert.Equal(1, (await host.Backend.AbandonLeasesAsync(workerId, CancellationToken.None)).Count);
        host.Probe.Gate.TrySetResult();
        await WaitUntilAsync(() => host.Probe.Runs == 2);
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        Assert.Equal(2, record.Attempts);
        // Stopped, the worker has written (and raised the events of) every outcome it holds: both attempts'.
        await host.StopAsync();

        // Only the second attempt's success is an event: the first one's changed nothing.
        var succeeded = Assert.Single(events, e => e.TaskId == result.Id && e.Kind == TaskEventKind.Succeeded);
        Assert.Equal(2, succeeded.Attempt);
        Assert.Equal(2, events.Count(e => e.TaskId == result.Id && e.Kind == TaskEventKind.Started));
    }

    [Fact]
    public async Task A_batch_written_again_after_its_answer_was_lost_raises_its_events_as_asked()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        await using var host = new EngineHost(c =>
        {
            c.AddTask<CountingTask>(CountingTask.Name);
            c.OnTaskEvent(events.Enqueue);
        }, backend: inner => new WatchedBackend(inner, CompletionHook.Wrap(inner.Queue, answersLost: 1)));
        await host.StartAsync();

        // The first write stores the success and fails (its answer lost); the worker writes the batch again, which the
        // backend ignores (the lease is settled): the success is still an event.
        var result = await host.Client.EnqueueAsync(CountingTask.Name);
        await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        await host.StopAsync();

        var succeeded = Assert.Single(events, e => e.TaskId == result.Id && e.Kind == TaskEventKind.Succeeded);
        Assert.Equal(1, succeeded.Attempt);
        Assert.Equal(1, host.Probe.Runs);
    }

    [Fact]
    public async Task A_batch_written_again_after_its_lease_was_lost_raises_no_event_for_it()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        var released = 0;
        await using var host = new EngineHost(c =>
        {
            c.AddTask<CountingTask>(CountingTask.Name);
            c.OnTaskEvent(events.Enqueue);
        }, backend: inner => new WatchedBackend(inner, CompletionHook.Wrap(inner.Queue, before: async batch =>
        {
            // The first batch's lease is lost before it is written (an outage longer than a lease would do it): the write
            // then changes nothing, fails all the same, and is written again, which the backend ignores too.
            if (Interlocked.Exchange(ref released, 1) == 0)
            {
                Assert.Equal(1, (await inner.Queue.ReleaseAsync([.. batch.Select(c => c.Lease)], CancellationToken.None)).Count);
            }
        }, answersLost: 1)));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(CountingTask.Name);
        await WaitUntilAsync(() => host.Probe.Runs == 2);
        await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        await host.StopAsync();

        // The store says the first run's success was never stored: only the second run's is an event. (Its start went in
        // the batch of its completion, so the store took the lease back unstarted: both runs are attempt 1.)
        Assert.Equal(1, Volatile.Read(ref released));
        Assert.Single(events, e => e.TaskId == result.Id && e.Kind == TaskEventKind.Succeeded);
        Assert.Equal(2, events.Count(e => e.TaskId == result.Id && e.Kind == TaskEventKind.Started));
    }

    [Fact]
    public async Task A_put_back_by_the_limits_stage_that_the_store_cancelled_raises_the_cancelled_event()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        await using var host = new EngineHost(c =>
        {
            c.AddTask<RecordedTask>(RecordedTask.Name, t => t.RateLimit = "1/m");
            c.OnTaskEvent(events.Enqueue);
        }, backend: inner => new WatchedBackend(inner, CompletionHook.Wrap(inner.Queue, before: async batch =>
        {
            // The cancel reaches the backend while the put-back is on its way: the store cancels the task instead.
            foreach (var completion in batch.Where(c => c.Unstarted && c.Kind == CompletionKind.Retry))
            {
                Assert.Equal(CancelOutcome.Requested, await inner.Queue.CancelAsync(completion.Lease.TaskId, CancellationToken.None));
            }
        })));
        await host.StartAsync();

        // 1/m: one of the two runs, the other is put back unstarted for its slot a minute on.
        var results = await host.Client.EnqueueManyAsync([.. Enumerable.Range(0, 2).Select(_ => TaskRequest.Create(RecordedTask.Name, new TenantArgs("a", 0)))]);
        var records = new List<TaskRecord>();
        foreach (var r in results)
        {
            records.Add(await host.WaitForAsync(r.Id, t => t.State.IsTerminal()));
        }
        await host.StopAsync();

        var putBack = Assert.Single(records, r => r.State == TaskState.Cancelled);
        Assert.Single(records, r => r.State == TaskState.Succeeded);
        var ofPutBack = events.Where(e => e.TaskId == putBack.Id && e.Kind != TaskEventKind.Enqueued).ToList();
        var cancelled = Assert.Single(ofPutBack);
        Assert.Equal(TaskEventKind.Cancelled, cancelled.Kind);
        Assert.Equal(TaskState.Cancelled, cancelled.State);
        Assert.Null(cancelled.RetryAt);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold in time");
            await Task.Delay(20);
        }
    }

    /// <summary>Runs until the probe's gate opens, whatever its token says, then fails (with attempts left: a retry).</summary>
    private sealed class FailsAtTheGateTask(Probe probe) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.fails-at-the-gate";

        public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            probe.Ran();
            await probe.Gate.Task;
            throw new InvalidOperationException($"attempt {context.Attempt} failed at the gate");
        }
    }
}

/// <summary>The queue role as it is, except that each completion batch is first shown to <c>before</c> (which may act on
/// the store meanwhile), the answers of the first <c>answersLost</c> batches are lost (stored, then the call fails, as a
/// timeout after the write or a connection lost after the commit does), and the others pass through <c>answered</c>.</summary>
public class CompletionHook : DispatchProxy
{
    private IQueueBackend _inner = null!;
    private Func<IReadOnlyList<Completion>, Task>? _before;
    private int _answersLost;
    private Func<IReadOnlyList<CompletionOverride>, IReadOnlyList<CompletionOverride>>? _answered;

    internal static IQueueBackend Wrap(IQueueBackend inner, Func<IReadOnlyList<Completion>, Task>? before = null, int answersLost = 0,
        Func<IReadOnlyList<CompletionOverride>, IReadOnlyList<CompletionOverride>>? answered = null)
    {
        var proxy = Create<IQueueBackend, CompletionHook>();
        var hook = (CompletionHook)(object)proxy;
        hook._inner = inner;
        hook._before = before;
        hook._answersLost = answersLost;
        hook._answered = answered;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        if (targetMethod!.Name == nameof(IQueueBackend.CompleteAsync))
        {
            return CompleteAsync((IReadOnlyList<Completion>)args![0]!);
        }
        return QueueProxy.Forward(_inner, targetMethod, args);
    }

    private async Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions)
    {
        if (_before is { } before)
        {
            await before(completions);
        }
        var answer = await _inner.CompleteAsync(completions, CancellationToken.None);
        if (Interlocked.Decrement(ref _answersLost) >= 0)
        {
            throw new IOException("the answer of a stored completion was lost (test)");
        }
        return _answered is { } answered ? answered(answer) : answer;
    }
}
