using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Tests;

public sealed class WorkflowEventBusUnitTests
{
    private static WorkflowEvent End(Guid id, DateTimeOffset at, WorkflowEventKind kind = WorkflowEventKind.Succeeded) => new()
    {
        Kind = kind,
        WorkflowId = id,
        State = kind == WorkflowEventKind.Failed ? WorkflowState.Failed : WorkflowState.Succeeded,
        At = at,
        Origin = "a",
    };

    [Fact]
    public void An_end_raised_by_two_processes_reaches_a_subscriber_once_and_a_later_end_again()
    {
        var bus = new TaskEventBus([]);
        var seen = new List<WorkflowEvent>();
        using var subscription = bus.SubscribeWorkflows(seen.Add, includeRemote: true);
        var id = Guid.NewGuid();
        var at = DateTimeOffset.UnixEpoch.AddDays(1);

        bus.PublishWorkflow(End(id, at));
        bus.PublishRemoteWorkflow(End(id, at) with { Origin = "b" });
        bus.PublishWorkflow(End(id, at));
        Assert.Single(seen);

        // Retried and ended again: a new end time.
        bus.PublishWorkflow(End(id, at.AddSeconds(1), WorkflowEventKind.Failed));
        Assert.Equal(2, seen.Count);
        // Not ends: never dropped.
        var created = new WorkflowEvent { Kind = WorkflowEventKind.Created, WorkflowId = id, State = WorkflowState.Running, At = at };
        bus.PublishWorkflow(created);
        bus.PublishWorkflow(created);
        Assert.Equal(4, seen.Count);
    }

    [Fact]
    public void Remote_workflow_events_reach_only_subscribers_that_asked_for_them_and_count_as_remote_interest()
    {
        var bus = new TaskEventBus([]);
        var local = new List<WorkflowEvent>();
        var all = new List<WorkflowEvent>();
        Assert.False(bus.IsWorkflowObserved);
        using var localOnly = bus.SubscribeWorkflows(local.Add);
        Assert.True(bus.IsWorkflowObserved);
        Assert.Equal(0, bus.RemoteSubscribers);
        using (bus.SubscribeWorkflows(all.Add, includeRemote: true))
        {
            Assert.Equal(1, bus.RemoteSubscribers);
            bus.PublishRemoteWorkflow(End(Guid.NewGuid(), DateTimeOffset.UnixEpoch));
            Assert.Empty(local);
            Assert.Single(all);
        }
        Assert.Equal(0, bus.RemoteSubscribers);
    }

    [Fact]
    public void Each_ended_or_retried_step_event_of_this_process_is_handed_to_the_probe_and_nothing_else_is()
    {
        var bus = new TaskEventBus([]);
        var handed = new List<Guid>();
        bus.StepEnded = handed.Add;
        var workflow = Guid.NewGuid();
        TaskEvent Event(TaskEventKind kind, Guid? workflowId) => new()
        {
            Kind = kind,
            State = TaskState.Succeeded,
            TaskId = Guid.NewGuid(),
            Task = "t",
            Queue = "q",
            At = DateTimeOffset.UnixEpoch,
            WorkflowId = workflowId,
        };
        foreach (var kind in Enum.GetValues<TaskEventKind>())
        {
            bus.Publish(Event(kind, workflow));
            bus.Publish(Event(kind, null));
        }
        bus.PublishRemote(Event(TaskEventKind.Succeeded, workflow));
        // Succeeded, dead, cancelled, expired, and retrying (a step held back by its workflow's retried steps goes back to
        // pending instead, which may end the workflow).
        Assert.Equal([workflow, workflow, workflow, workflow, workflow], handed);
    }

    [Fact]
    public void The_JSON_form_reads_back_what_it_wrote_and_refuses_what_is_not_an_event()
    {
        var original = new WorkflowEvent
        {
            Kind = WorkflowEventKind.Retried,
            WorkflowId = Guid.NewGuid(),
            Name = "nightly \"harvest\"",
            State = WorkflowState.Running,
            At = new DateTimeOffset(2026, 12, 4, 8, 0, 0, 123, TimeSpan.Zero),
            Origin = "vm:1:abc",
        };
        var json = WorkflowEventKinds.ToJson(original);
        Assert.Contains("\"type\":\"retried\"", json, StringComparison.Ordinal);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(original, WorkflowEventKinds.Read(document.RootElement));

        using var bad = JsonDocument.Parse("""{"type":"exploded","workflowId":"00000000-0000-0000-0000-000000000000","state":"running","at":"2026-12-04T08:00:00Z"}""");
        Assert.Throws<FormatException>(() => WorkflowEventKinds.Read(bad.RootElement));
        using var task = JsonDocument.Parse("""{"type":"succeeded","taskId":"00000000-0000-0000-0000-000000000000"}""");
        Assert.Throws<FormatException>(() => WorkflowEventKinds.Read(task.RootElement));
    }
}
