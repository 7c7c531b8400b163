using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Engine;

/// <summary>The worker's side of leases on the in-memory backend: starts recorded, lost leases stop their handlers,
/// leases waiting in the prefetch buffer are not held forever.</summary>
public sealed class LeaseEngineTests
{
    [Fact]
    public async Task Handler_start_is_recorded_while_it_runs()
    {
        await using var host = new EngineHost(c => c.AddTask<GatedTask>(GatedTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(GatedTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));

        await WaitUntilAsync(() => host.Backend.IsAttemptStarted(result.Id), "the start to be recorded");
        host.Probe.Gate.TrySetResult();
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        Assert.Equal(1, record.Attempts);
    }

    [Fact]
    public async Task Lost_lease_cancels_its_handler_and_its_outcome_is_dropped()
    {
        await using var host = new EngineHost(c => c.AddTask<HangingTask>(HangingTask.Name));
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(HangingTask.Name, options: new EnqueueOptions { MaxAttempts = 1 });
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await WaitUntilAsync(() => host.Backend.IsAttemptStarted(result.Id), "the start to be recorded");

        // What a supervisor does when it takes a worker for gone: the lease ends, and the task is redelivered.
        var workerId = host.Services.GetRequiredService<WorkerStatus>().WorkerId;
        Assert.Equal(1, (await host.Backend.AbandonLeasesAsync(workerId, CancellationToken.None)).Count);

        // The next heartbeat (100 ms) hears the lease is lost: the handler's token is cancelled at once...
        await host.Probe.TokenCancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        // ...and the task runs again as a redelivery, its interrupted attempt counted; the first handler's outcome
        // (cancelled) was not written.
        var record = await host.WaitForAsync(result.Id, r => r.State == TaskState.Running && r.Attempts == 2 && host.Probe.Runs == 2);
        Assert.DoesNotContain(TaskState.Cancelled, record.Transitions.Select(t => t.State));
        Assert.Equal(LeaseRules.InterruptedErrorType, Assert.Single(record.Errors).Error.Type);
        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(result.Id));
        await host.WaitForStateAsync(result.Id, TaskState.Cancelled);
    }

    /// <summary>One handler, for a <see cref="GatedTask"/> to block, and a prefetch buffer of 4 behind it; leases of 3 s.</summary>
    private static EngineHost OneHandlerWithABuffer() => new(
        c => c.AddTask<GatedTask>(GatedTask.Name).AddNoopTask(),
        o =>
        {
            o.Worker.Concurrency = 1;
            o.Worker.Prefetch = 4;
            // Long enough that the blocker's own lease survives a loaded machine's slow beats; the waiting ones go back after it.
            o.Worker.LeaseDuration = TimeSpan.FromSeconds(3);
        });

    [Fact]
    public async Task Leases_waiting_longer_than_a_lease_behind_a_busy_handler_are_handed_back_unspent()
    {
        await using var host = OneHandlerWithABuffer();
        await host.StartAsync();
        var blocker = await host.Client.EnqueueAsync(GatedTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        var waiting = await host.Client.EnqueueManyAsync([new TaskRequest(NoopTask.Name), new TaskRequest(NoopTask.Name)]);

        // Fetched into the buffer behind the blocked handler, then handed back after a lease instead of being extended.
        await host.WaitForAsync(waiting[0].Id, r => r.Transitions.Select(t => t.State).SequenceEqual(
            [TaskState.Queued, TaskState.Running, TaskState.Queued, TaskState.Running]) || r.Transitions.Count > 4);
        Assert.Equal(TaskState.Running, (await host.Client.GetAsync(blocker.Id))!.State);

        host.Probe.Gate.TrySetResult();
        foreach (var task in waiting)
        {
            var record = await host.WaitForStateAsync(task.Id, TaskState.Succeeded);
            Assert.Equal(1, record.Attempts);
            Assert.Empty(record.Errors);
        }
        Assert.Equal(1, (await host.WaitForStateAsync(blocker.Id, TaskState.Succeeded)).Attempts);
    }

    [Fact]
    public async Task A_lease_handed_back_from_the_prefetch_buffer_that_ends_its_task_raises_the_tasks_event()
    {
        await using var host = OneHandlerWithABuffer();
        var cancelled = new TaskCompletionSource<TaskEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        Guid? watched = null;
        using var subscription = host.Services.GetRequiredService<TaskEventBus>().Subscribe(e =>
        {
            if (e.TaskId == watched && e.Kind == TaskEventKind.Cancelled)
            {
                cancelled.TrySetResult(e);
            }
        });
        await host.StartAsync();
        var blocker = await host.Client.EnqueueAsync(GatedTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        var waiting = await host.Client.EnqueueAsync(NoopTask.Name);
        watched = waiting.Id;
        await host.WaitForAsync(waiting.Id, r => r.State == TaskState.Running);

        // Its cancel is asked while it waits in the buffer behind the blocked handler: the hand-back after a lease ends
        // it, and the worker raises its event (ReleaseAsync reports it), as the reaper would for a lease that ran out.
        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(waiting.Id));
        var taskEvent = await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(TaskState.Cancelled, taskEvent.State);
        Assert.Equal(NoopTask.Name, taskEvent.Task);
        Assert.Equal(TaskState.Cancelled, (await host.Client.GetAsync(waiting.Id))!.State);

        host.Probe.Gate.TrySetResult();
        Assert.Equal(1, (await host.WaitForStateAsync(blocker.Id, TaskState.Succeeded)).Attempts);
    }

    [Fact]
    public async Task A_lease_still_held_at_the_end_of_the_drain_is_handed_back_rather_than_left_to_run_out()
    {
        await using var host = new EngineHost(c => c.AddTask<StubbornTask>(StubbornTask.Name), o =>
        {
            o.Worker.ShutdownTimeout = TimeSpan.FromMilliseconds(200);
            o.Worker.LeaseDuration = TimeSpan.FromMinutes(10);
        });
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(StubbornTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await WaitUntilAsync(() => host.Backend.IsAttemptStarted(result.Id), "the start to be recorded");

        // The drain gives the handler 200 ms, cancels it, waits up to 5 s more, then ends what it still holds.
        await host.StopAsync();

        var record = await host.Client.GetAsync(result.Id);
        // Back now as an interrupted attempt, not after its 10-minute lease.
        Assert.Equal(TaskState.Queued, record!.State);
        Assert.Equal(LeaseRules.InterruptedErrorType, Assert.Single(record.Errors).Error.Type);
        host.Probe.Gate.TrySetResult();
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }
}

public sealed class NoHandlerEngineTests
{
    [Fact]
    public async Task Task_no_handler_here_declares_waits_with_its_attempts_unspent_and_is_never_dead()
    {
        await using var host = new EngineHost(c => c.AddNoopTask());
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync("reports.nightly", options: new EnqueueOptions { MaxAttempts = 1 });
        var record = await host.WaitForAsync(result.Id, r => r.State != TaskState.Queued && r.State != TaskState.Running);

        Assert.Equal(TaskState.Retrying, record.State);
        Assert.Equal(0, record.Attempts);
        Assert.Equal("Conveyor.NoHandler", record.Error?.Type);
        Assert.Contains("reports.nightly", record.Error?.Message, StringComparison.Ordinal);
        Assert.NotNull(record.NotBefore);
    }
}
