using Conveyor.Backends;
using Conveyor.Tests.Engine;
using Conveyor.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Workflows;

/// <summary>Workflow events raised by a real host on the in-memory backend: created, each end once, cancel and retry.</summary>
public sealed class WorkflowEventEngineTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private static EngineHost NewHost() => new(c => c
        .AddTask<WorkflowEngineTests.AddHandler>("math.add")
        .AddTask<WorkflowEngineTests.CollectHandler>("math.collect")
        .AddTask<WorkflowEngineTests.FailHandler>("test.fail"));

    private static TaskRequest Add(int value) => TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(value));

    /// <summary>The workflow events of one host, as they came.</summary>
    private sealed class Recorded : IDisposable
    {
        private readonly List<WorkflowEvent> _events = [];
        private readonly IDisposable _subscription;

        public Recorded(EngineHost host) =>
            _subscription = host.Services.GetRequiredService<TaskEventBus>().SubscribeWorkflows(e =>
            {
                lock (_events)
                {
                    _events.Add(e);
                }
            });

        public IReadOnlyList<WorkflowEvent> Of(Guid workflowId)
        {
            lock (_events)
            {
                return [.. _events.Where(e => e.WorkflowId == workflowId)];
            }
        }

        public async Task WaitForAsync(Guid workflowId, Func<IReadOnlyList<WorkflowEvent>, bool> condition, string what)
        {
            var deadline = DateTime.UtcNow + Deadline;
            while (!condition(Of(workflowId)))
            {
                Assert.True(DateTime.UtcNow < deadline,
                    $"Waited {Deadline.TotalSeconds} s for {what}; events: {string.Join(", ", Of(workflowId).Select(e => e.Kind))}");
                await Task.Delay(10);
            }
        }

        public void Dispose() => _subscription.Dispose();
    }

    [Fact]
    public async Task A_chord_raises_created_then_succeeded_once_with_its_stored_end_time()
    {
        await using var host = NewHost();
        await host.StartAsync();
        using var recorded = new Recorded(host);
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Chord(Enumerable.Range(1, 30).Select(Add), new TaskRequest("math.collect")));
        using var timeout = new CancellationTokenSource(Deadline);
        var record = await handle.WaitAsync(timeout.Token);
        await recorded.WaitForAsync(handle.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Succeeded), "the succeeded event");
        // 31 step ends, each looked at: the end is announced once.
        await Task.Delay(WorkflowEndProbe.RoundInterval * 5);
        var events = recorded.Of(handle.Id);
        Assert.Equal([WorkflowEventKind.Created, WorkflowEventKind.Succeeded], events.Select(e => e.Kind));
        Assert.Equal(WorkflowState.Running, events[0].State);
        Assert.Equal(WorkflowState.Succeeded, events[1].State);
        Assert.Equal(record.FinishedAt, events[1].At);
        Assert.All(events, e => Assert.False(string.IsNullOrEmpty(e.Origin)));
    }

    [Fact]
    public async Task A_failed_workflow_raises_failed_and_after_a_retry_retried_and_failed_again()
    {
        await using var host = NewHost();
        await host.StartAsync();
        using var recorded = new Recorded(host);
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Create("fails-twice")
            .Step("fail", new TaskRequest("test.fail"))
            .Step("after", Add(1), "fail")
            .Build());
        await recorded.WaitForAsync(handle.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Failed), "the failed event");
        var first = recorded.Of(handle.Id).Single(e => e.Kind == WorkflowEventKind.Failed);
        Assert.Equal("fails-twice", first.Name);
        Assert.Equal(WorkflowState.Failed, first.State);

        Assert.True(await workflows.RetryAsync(handle.Id));
        await recorded.WaitForAsync(handle.Id, e => e.Count(x => x.Kind == WorkflowEventKind.Failed) == 2, "the second failed event");
        await recorded.WaitForAsync(handle.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Retried), "the retried event");
        // The retried step can fail again, and its end be announced, before the retry's caller raises its event: the
        // order is in the times.
        var events = recorded.Of(handle.Id).OrderBy(e => e.At).ToList();
        Assert.Equal([WorkflowEventKind.Created, WorkflowEventKind.Failed, WorkflowEventKind.Retried, WorkflowEventKind.Failed],
            events.Select(e => e.Kind));
        Assert.Equal(WorkflowState.Running, events[2].State);
        Assert.Equal("fails-twice", events[2].Name);
        Assert.Equal((await workflows.GetAsync(handle.Id))!.FinishedAt, events[3].At);
    }

    [Fact]
    public async Task A_cancel_by_hand_raises_cancelled_once()
    {
        await using var host = NewHost();
        await host.StartAsync();
        using var recorded = new Recorded(host);
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        // Its first step waits on a queue no worker here consumes.
        var handle = await workflows.StartAsync(Workflow.Create()
            .Step("wait", TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(1), new EnqueueOptions { Queue = "nobody-consumes" }))
            .Step("after", Add(2), "wait")
            .Build());
        Assert.True(await workflows.CancelAsync(handle.Id));
        Assert.False(await workflows.CancelAsync(handle.Id));
        await recorded.WaitForAsync(handle.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Cancelled), "the cancelled event");
        var events = recorded.Of(handle.Id);
        Assert.Equal([WorkflowEventKind.Created, WorkflowEventKind.Cancelled], events.Select(e => e.Kind));
        Assert.Equal(WorkflowState.Cancelled, events[1].State);
        Assert.Equal((await workflows.GetAsync(handle.Id))!.FinishedAt, events[1].At);
    }

    /// <summary>A host whose reaper runs often; its step waits on a queue no worker here consumes, leased by hand by a
    /// "worker" that then vanishes.</summary>
    private static EngineHost NewReapingHost() => new(c => c
        .AddTask<WorkflowEngineTests.AddHandler>("math.add"), o => o.Scheduler.ReaperInterval = TimeSpan.FromMilliseconds(20));

    private static FetchRequest GoneWorker() => new()
    {
        WorkerId = "a-worker-that-dies",
        Queues = [new QueueWeight("nobody-consumes")],
        MaxCount = 1,
        LeaseDuration = TimeSpan.FromMilliseconds(30),
    };

    /// <summary>Leases the step's task as a worker that dies while its handler runs, and waits for the reaper to take the
    /// lease back (queued again) or end the task.</summary>
    private static async Task LeaseAndDieAsync(EngineHost host, Guid taskId, TaskState after)
    {
        var lease = Assert.Single(await host.Backend.FetchAsync(GoneWorker(), CancellationToken.None));
        Assert.Equal(taskId, lease.Message.Id);
        Assert.Empty(await host.Backend.StartAsync([lease.Ref], CancellationToken.None));
        var deadline = DateTime.UtcNow + Deadline;
        while ((await host.Client.GetAsync(taskId))!.State != after)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the reaper did not make task {taskId} {after}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task A_step_whose_lease_runs_out_for_the_last_time_raises_its_dead_event_and_the_workflows_failed()
    {
        await using var host = NewReapingHost();
        await host.StartAsync();
        using var recorded = new Recorded(host);
        var taskEvents = new List<TaskEvent>();
        using var subscription = host.Services.GetRequiredService<TaskEventBus>().Subscribe(e =>
        {
            lock (taskEvents)
            {
                taskEvents.Add(e);
            }
        });
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Create("reaped")
            .Step("wait", TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(1), new EnqueueOptions { Queue = "nobody-consumes", MaxAttempts = 1 }))
            .Step("after", Add(2), "wait")
            .Build());
        var step = (await workflows.GetAsync(handle.Id))!.Step("wait").TaskId;
        for (var i = 1; i < LeaseRules.MaxInterruptions; i++)
        {
            await LeaseAndDieAsync(host, step, TaskState.Queued);
        }
        await LeaseAndDieAsync(host, step, TaskState.Dead);

        await recorded.WaitForAsync(handle.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Failed), "the failed event");
        TaskEvent dead;
        lock (taskEvents)
        {
            // Requeued leases are no task's end: only the last one raised an event.
            dead = Assert.Single(taskEvents, e => e.TaskId == step && e.Kind != TaskEventKind.Enqueued);
        }
        Assert.Equal(TaskEventKind.Dead, dead.Kind);
        Assert.Equal(TaskState.Dead, dead.State);
        Assert.Equal(handle.Id, dead.WorkflowId);
        Assert.Equal("wait", dead.StepId);
        Assert.Equal("nobody-consumes", dead.Queue);
        Assert.Equal("math.add", dead.Task);
        Assert.Equal(LeaseRules.MaxInterruptions, dead.Attempt);
        Assert.Equal(LeaseRules.InterruptedErrorType, dead.Error?.Type);
        var record = (await workflows.GetAsync(handle.Id))!;
        Assert.Equal(record.Step("wait").Task!.FinishedAt, dead.At);
        var failed = Assert.Single(recorded.Of(handle.Id), e => e.Kind == WorkflowEventKind.Failed);
        Assert.Equal(record.FinishedAt, failed.At);
        Assert.Equal("reaped", failed.Name);
    }

    [Fact]
    public async Task A_running_step_cancelled_by_hand_whose_worker_is_gone_raises_cancelled_and_the_workflows_failed()
    {
        await using var host = NewReapingHost();
        await host.StartAsync();
        using var recorded = new Recorded(host);
        var cancelled = new TaskCompletionSource<TaskEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Create()
            .Step("wait", TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(1), new EnqueueOptions { Queue = "nobody-consumes" }))
            .Step("after", Add(2), "wait")
            .Build());
        var step = (await workflows.GetAsync(handle.Id))!.Step("wait").TaskId;
        using var subscription = host.Services.GetRequiredService<TaskEventBus>().Subscribe(e =>
        {
            if (e.TaskId == step && e.Kind == TaskEventKind.Cancelled)
            {
                cancelled.TrySetResult(e);
            }
        });
        // Its worker takes it, starts it, and dies before it hears of the cancel: the cancel is only asked.
        var lease = Assert.Single(await host.Backend.FetchAsync(GoneWorker() with { LeaseDuration = TimeSpan.FromSeconds(1) }, CancellationToken.None));
        Assert.Empty(await host.Backend.StartAsync([lease.Ref], CancellationToken.None));
        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(step));

        var cancel = await cancelled.Task.WaitAsync(Deadline);
        Assert.Equal(TaskState.Cancelled, cancel.State);
        Assert.Equal(handle.Id, cancel.WorkflowId);
        Assert.Null(cancel.Error);
        await recorded.WaitForAsync(handle.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Failed), "the failed event");
        Assert.Equal(WorkflowState.Failed, (await workflows.GetAsync(handle.Id))!.State);
    }

    [Fact]
    public async Task The_leaders_retention_deletes_a_finished_workflow_past_its_retention_and_keeps_a_running_one()
    {
        await using var host = new EngineHost(c => c.AddTask<WorkflowEngineTests.AddHandler>("math.add"), o =>
        {
            o.Workflows.Retention = TimeSpan.FromSeconds(1);
            o.Scheduler.RetentionInterval = TimeSpan.FromMilliseconds(20);
        });
        await host.StartAsync();
        using var recorded = new Recorded(host);
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var waiting = await workflows.StartAsync(Workflow.Create()
            .Step("wait", TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(1), new EnqueueOptions { Queue = "nobody-consumes" }))
            .Build());
        var done = await workflows.StartAsync(Workflow.Chain([Add(1), Add(2)]));
        var steps = (await workflows.GetAsync(done.Id))!.Steps.Select(s => s.TaskId).ToList();
        // Deleted a second after its end (its end event read it first): watched, not waited for by reading it.
        await recorded.WaitForAsync(done.Id, e => e.Any(x => x.Kind == WorkflowEventKind.Succeeded), "the succeeded event");

        var deadline = DateTime.UtcNow + Deadline;
        while (await workflows.GetAsync(done.Id) is not null)
        {
            Assert.True(DateTime.UtcNow < deadline, "retention did not delete the finished workflow");
            await Task.Delay(10);
        }
        foreach (var step in steps)
        {
            Assert.Null(await host.Client.GetAsync(step));
        }
        Assert.Equal(WorkflowState.Running, (await workflows.GetAsync(waiting.Id))!.State);
    }
}
