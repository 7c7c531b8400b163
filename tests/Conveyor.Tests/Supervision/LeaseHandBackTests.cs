using System.Collections.Concurrent;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Testing;
using Conveyor.Tests.Engine;
using Conveyor.Tests.Workflows;
using Conveyor.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.Tests.Supervision;

/// <summary>The hand-back of a gone worker's leases (what a supervisor, or its hand-back process, does for a child that
/// exited without doing it itself): the leases end, and a step that this ends for good — its last interrupted attempt —
/// has its task event and its workflow's end sent to the other processes on the notifier's event channels, where their
/// bridges pick them up.</summary>
public sealed class LeaseHandBackTests
{
    private const string GoneWorker = "host:1:1.1-abcdef";

    /// <summary>Leases the step's task as <see cref="GoneWorker"/> and records its start, as a child does before it dies.</summary>
    private static async Task LeaseAndStartAsync(InMemoryBackend backend, Guid taskId)
    {
        var leases = await backend.Queue.FetchAsync(new FetchRequest
        {
            WorkerId = GoneWorker,
            Queues = [new QueueWeight("nobody-consumes")],
            MaxCount = 1,
            LeaseDuration = TimeSpan.FromMinutes(5),
        }, CancellationToken.None);
        var lease = Assert.Single(leases);
        Assert.Equal(taskId, lease.Message.Id);
        await backend.Queue.StartAsync([lease.Ref], CancellationToken.None);
    }

    [Fact]
    public async Task A_step_ended_for_good_by_a_hand_back_is_announced_with_its_workflows_end()
    {
        await using var host = new EngineHost(c => c.AddTask<WorkflowEngineTests.AddHandler>("math.add"));
        await host.StartAsync();
        var backend = host.Backend;
        var taskEvents = new ConcurrentQueue<TaskEvent>();
        var workflowEvents = new ConcurrentQueue<WorkflowEvent>();
        await using var taskChannel = await backend.Notifier.SubscribeAsync(NotifierChannels.Events,
            n => Read(n.Payload, e => taskEvents.Enqueue(TaskEventJson.Read(e))), CancellationToken.None);
        await using var workflowChannel = await backend.Notifier.SubscribeAsync(NotifierChannels.WorkflowEvents,
            n => Read(n.Payload, e => workflowEvents.Enqueue(WorkflowEventKinds.Read(e))), CancellationToken.None);
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        // maxAttempts 1 does not bound interruptions: the step is dead at its third (LeaseRules.MaxInterruptions).
        var handle = await workflows.StartAsync(Workflow.Create("handed-back")
            .Step("wait", TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(1), new EnqueueOptions { Queue = "nobody-consumes", MaxAttempts = 1 }))
            .Step("after", TaskRequest.Create("math.add", new WorkflowEngineTests.AddArgs(2)), "wait")
            .Build());
        var stepTask = (await workflows.GetAsync(handle.Id))!.Steps.Single(s => s.Id == "wait").TaskId;

        for (var interruption = 1; interruption < LeaseRules.MaxInterruptions; interruption++)
        {
            await LeaseAndStartAsync(backend, stepTask);
            var sweep = await LeaseHandBack.RunAsync(backend, GoneWorker, TimeProvider.System, NullLogger.Instance, CancellationToken.None);
            Assert.Equal(1, sweep.Count);
            Assert.Empty(sweep.Ended);
        }
        // Interrupted attempts that leave the task to run again raise nothing here: the worker that runs it next does.
        Assert.Empty(taskEvents);

        await LeaseAndStartAsync(backend, stepTask);
        var last = await LeaseHandBack.RunAsync(backend, GoneWorker, TimeProvider.System, NullLogger.Instance, CancellationToken.None);

        Assert.Equal([new EndedLease(stepTask, TaskState.Dead)], last.Ended);
        var dead = Assert.Single(taskEvents);
        Assert.Equal(TaskEventKind.Dead, dead.Kind);
        Assert.Equal(stepTask, dead.TaskId);
        Assert.Equal(handle.Id, dead.WorkflowId);
        Assert.Equal("wait", dead.StepId);
        Assert.Equal(LeaseRules.InterruptedErrorType, dead.Error?.Type);
        Assert.Equal(GoneWorker, dead.Origin);
        var failed = Assert.Single(workflowEvents);
        Assert.Equal(WorkflowEventKind.Failed, failed.Kind);
        Assert.Equal("handed-back", failed.Name);
        Assert.Equal((await workflows.GetAsync(handle.Id))!.FinishedAt, failed.At);
    }

    [Fact]
    public async Task A_hand_back_that_ends_nothing_for_good_sends_nothing()
    {
        var backend = new InMemoryBackend();
        var notifications = new ConcurrentQueue<Notification>();
        await using var events = await backend.Notifier.SubscribeAsync(NotifierChannels.Events, notifications.Enqueue, CancellationToken.None);
        var id = Guid.CreateVersion7();
        await backend.Queue.EnqueueAsync([new TaskMessage { Id = id, Task = "t", Queue = "nobody-consumes", MaxAttempts = 1, CreatedAt = DateTimeOffset.UtcNow }],
            CancellationToken.None);
        await LeaseAndStartAsync(backend, id);

        var sweep = await LeaseHandBack.RunAsync(backend, GoneWorker, TimeProvider.System, NullLogger.Instance, CancellationToken.None);

        Assert.Equal(1, sweep.Count);
        Assert.Empty(notifications);
        Assert.Equal(TaskState.Queued, (await backend.Store.GetAsync(id, CancellationToken.None))!.State);
    }

    private static void Read(string payload, Action<JsonElement> each)
    {
        using var document = JsonDocument.Parse(payload);
        foreach (var element in document.RootElement.EnumerateArray())
        {
            each(element);
        }
    }
}
