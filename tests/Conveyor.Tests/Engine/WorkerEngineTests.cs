namespace Conveyor.Tests.Engine;

/// <summary>The worker engine through a real host on the in-memory backend: retries, failures, time limits, cancellation, shutdown.</summary>
public sealed class WorkerEngineTests
{
    private static readonly RetryPolicy FastRetry = new(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(50), Jitter: 0);

    [Fact]
    public async Task Failing_task_is_retried_then_dead_after_MaxAttempts()
    {
        await using var host = new EngineHost(c => c.AddTask<FailingTask>(FailingTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(FailingTask.Name, options: new EnqueueOptions { MaxAttempts = 3, Retry = FastRetry });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(3, record.Attempts);
        Assert.Equal(3, host.Probe.Runs);
        Assert.Equal([1, 2, 3], record.Errors.Select(e => e.Attempt));
        Assert.All(record.Errors, e => Assert.Equal("System.InvalidOperationException", e.Error.Type));
        Assert.Equal("attempt 3 failed", record.Error?.Message);
        Assert.Equal(2, record.Transitions.Count(t => t.State == TaskState.Retrying));
        Assert.NotNull(record.FinishedAt);
    }

    [Fact]
    public async Task PermanentTaskException_makes_the_task_dead_without_a_retry()
    {
        await using var host = new EngineHost(c => c.AddTask<PermanentlyFailingTask>(PermanentlyFailingTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(PermanentlyFailingTask.Name, options: new EnqueueOptions { MaxAttempts = 5, Retry = FastRetry });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(1, record.Attempts);
        Assert.Equal(1, host.Probe.Runs);
        var error = Assert.Single(record.Errors);
        Assert.Equal(typeof(PermanentTaskException).FullName, error.Error.Type);
        Assert.DoesNotContain(TaskState.Retrying, record.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task Attempt_that_exceeds_its_timeout_fails_and_is_retried()
    {
        await using var host = new EngineHost(c => c.AddTask<HangingTask>(HangingTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(HangingTask.Name, options:
            new EnqueueOptions { Timeout = TimeSpan.FromMilliseconds(200), MaxAttempts = 2, Retry = FastRetry });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(2, record.Attempts);
        Assert.Equal(2, host.Probe.Runs);
        Assert.True(host.Probe.TokenCancelled.Task.IsCompleted);
        Assert.All(record.Errors, e => Assert.Equal(typeof(TimeoutException).FullName, e.Error.Type));
        Assert.Equal(2, record.Errors.Count);
    }

    [Fact]
    public async Task Cancelling_a_running_task_cancels_its_token_and_the_task()
    {
        await using var host = new EngineHost(c => c.AddTask<HangingTask>(HangingTask.Name));
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(HangingTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));

        var outcome = await host.Client.CancelAsync(result.Id);

        Assert.Equal(CancelOutcome.Requested, outcome);
        await host.Probe.TokenCancelled.Task.WaitAsync(TimeSpan.FromSeconds(20));
        var record = await host.WaitForStateAsync(result.Id, TaskState.Cancelled);
        Assert.Equal(1, record.Attempts);
        Assert.Empty(record.Errors);
        Assert.Equal(1, host.Probe.Runs);
    }

    [Fact]
    public async Task Cancelled_task_that_was_prefetched_but_not_started_is_cancelled_without_running()
    {
        await using var host = new EngineHost(c => c.AddTask<GatedTask>(GatedTask.Name).AddTask<CountingTask>(CountingTask.Name), o =>
        {
            o.Worker.Concurrency = 1;
            o.Worker.Prefetch = 2;
        });
        await host.StartAsync();
        var results = await host.Client.EnqueueManyAsync([new TaskRequest(GatedTask.Name), new TaskRequest(CountingTask.Name)]);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await host.WaitForQueueAsync(q => q.Count(TaskState.Running) == 2, "both tasks leased");

        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(results[1].Id));
        // The first heartbeat that begins after the cancel hears of it; the one after shows it was applied.
        await host.WaitForHeartbeatsAsync(DateTimeOffset.UtcNow, 2);
        host.Probe.Gate.SetResult();

        var record = await host.WaitForStateAsync(results[1].Id, TaskState.Cancelled);
        await host.WaitForStateAsync(results[0].Id, TaskState.Succeeded);
        Assert.Equal(1, host.Probe.Runs);
        Assert.Null(record.Result);
    }

    [Fact]
    public async Task Automatic_prefetch_holds_about_one_lease_per_handler_when_tasks_are_slow()
    {
        await using var host = new EngineHost(c => c.AddTask<SlowTask>(SlowTask.Name), o => o.Worker.Concurrency = 2);
        await host.StartAsync();
        await host.Client.EnqueueManyAsync(Enumerable.Range(0, 300).Select(_ => new TaskRequest(SlowTask.Name)).ToList());

        // It starts with 64 leases (4 per handler, at least 64); once it has timed handlers and a fetch it gives back
        // what it does not need, so other workers could take those tasks. A fixed prefetch keeps 64 until the backlog ends.
        await host.WaitForQueueAsync(q => q.Count(TaskState.Running) <= 4 && q.Count(TaskState.Queued) > 100,
            "at most 4 tasks leased while over 100 wait");
    }

    [Fact]
    public async Task Graceful_shutdown_hands_back_prefetched_tasks_that_never_started()
    {
        await using var host = new EngineHost(c => c.AddTask<GatedTask>(GatedTask.Name), o =>
        {
            o.Worker.Concurrency = 1;
            o.Worker.Prefetch = 5;
        });
        await host.StartAsync();
        var results = await host.Client.EnqueueManyAsync(Enumerable.Range(0, 5).Select(_ => new TaskRequest(GatedTask.Name)).ToList());
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await host.WaitForQueueAsync(q => q.Count(TaskState.Running) == 5, "all five tasks leased");

        var stop = host.StopAsync();
        await host.WaitForQueueAsync(q => q.Count(TaskState.Queued) == 4, "four tasks handed back");
        Assert.False(stop.IsCompleted, "the worker stopped before its running task finished");
        host.Probe.Gate.SetResult();
        await stop.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(1, host.Probe.Runs);
        var records = new List<TaskRecord>();
        foreach (var result in results)
        {
            records.Add((await host.Client.GetAsync(result.Id))!);
        }
        Assert.Single(records, r => r.State == TaskState.Succeeded);
        var handedBack = records.Where(r => r.State != TaskState.Succeeded).ToList();
        Assert.Equal(4, handedBack.Count);
        Assert.All(handedBack, r =>
        {
            Assert.Equal(TaskState.Queued, r.State);
            Assert.Equal(0, r.Attempts);
            Assert.Empty(r.Errors);
            Assert.Equal([TaskState.Queued, TaskState.Running, TaskState.Queued], r.Transitions.Select(t => t.State));
        });
    }

    [Fact]
    public async Task Expired_task_is_not_run()
    {
        await using var host = new EngineHost(c => c.AddTask<CountingTask>(CountingTask.Name));
        await host.StartAsync();

        var expired = await host.Client.EnqueueAsync(CountingTask.Name, options: new EnqueueOptions { ExpiresAt = DateTimeOffset.UtcNow.AddSeconds(-1) });
        var fresh = await host.Client.EnqueueAsync(CountingTask.Name, options: new EnqueueOptions { ExpiresAt = DateTimeOffset.UtcNow.AddHours(1) });

        var expiredRecord = await host.WaitForStateAsync(expired.Id, TaskState.Expired);
        var freshRecord = await host.WaitForStateAsync(fresh.Id, TaskState.Succeeded);
        Assert.Equal(1, host.Probe.Runs);
        Assert.Null(expiredRecord.Result);
        Assert.NotNull(expiredRecord.FinishedAt);
        Assert.Equal("\"ran attempt 1\"", freshRecord.Result);
    }

    [Fact]
    public async Task Task_enqueued_with_a_delay_runs_once_it_is_due()
    {
        await using var host = new EngineHost(c => c.AddTask<CountingTask>(CountingTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(CountingTask.Name, new EnqueueOptions { Delay = TimeSpan.FromMilliseconds(300) });

        Assert.Equal(TaskState.Scheduled, result.State);
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        Assert.Equal([TaskState.Scheduled, TaskState.Queued, TaskState.Running, TaskState.Succeeded], record.Transitions.Select(t => t.State));
    }
}
