namespace Conveyor.Conformance;

/// <summary>Queue role: cancelling tasks in every state and retrying finished ones by hand.</summary>
public abstract class QueueCancelRetryConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Cancel_of_a_queued_task_cancels_it()
    {
        var message = NewMessage();
        await EnqueueAsync(message);

        var outcome = await Queue.CancelAsync(message.Id, Timeout);

        Assert.Equal(CancelOutcome.Cancelled, outcome);
        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Cancelled, record.State);
        Assert.Equal(Now, record.FinishedAt);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Cancel_of_a_scheduled_task_cancels_it_and_it_is_never_promoted()
    {
        var message = NewMessage() with { NotBefore = Now.AddMinutes(1) };
        await EnqueueAsync(message);

        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(message.Id, Timeout));

        Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        Assert.Null(await Queue.NextDueAsync(Timeout));
        Assert.Equal(TaskState.Cancelled, await StateOf(message.Id));
    }

    [Fact]
    public async Task Cancel_of_a_retrying_task_cancels_it()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await RetryAtAsync(lease, Now.AddMinutes(1));

        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(lease.Message.Id, Timeout));

        Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        Assert.Equal(TaskState.Cancelled, await StateOf(lease.Message.Id));
    }

    [Fact]
    public async Task Cancel_of_a_running_task_is_requested_and_reported_at_the_next_extension()
    {
        await EnqueueManyAsync(2);
        var leases = await FetchAsync();

        var outcome = await Queue.CancelAsync(leases[0].Message.Id, Timeout);

        Assert.Equal(CancelOutcome.Requested, outcome);
        var record = await GetAsync(leases[0].Message.Id);
        Assert.Equal(TaskState.Running, record.State);
        Assert.True(record.CancelRequested);
        var extension = await Queue.ExtendLeasesAsync(leases.Select(l => l.Ref).ToList(), LeaseDuration, Timeout);
        Assert.Equal([leases[0].Message.Id], extension.CancelRequested);
        Assert.Empty(extension.Lost);
    }

    [Fact]
    public async Task Running_task_whose_cancel_was_requested_is_cancelled_by_its_worker()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await Queue.CancelAsync(lease.Message.Id, Timeout);

        await Queue.CompleteAsync([Completion(lease, CompletionKind.Cancelled)], Timeout);

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Cancelled, record.State);
        Assert.Equal(Now, record.FinishedAt);
    }

    [Fact]
    public async Task Running_task_whose_cancel_was_requested_is_cancelled_instead_of_retried()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await Queue.CancelAsync(lease.Message.Id, Timeout);

        // The handler failed before the worker heard of the cancel: the cancel still wins.
        await RetryAtAsync(lease, Now.AddSeconds(1));

        Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Cancelled, record.State);
        Assert.Equal(Now - TimeSpan.FromSeconds(1), record.FinishedAt);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Retry_of_a_task_whose_cancel_was_requested_is_reported_cancelled()
    {
        await EnqueueManyAsync(2);
        var leases = await FetchAsync();
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(leases[0].Message.Id, Timeout));

        // Both attempts fail and ask for a retry; the cancel asked of the first wins, and the caller hears so (its worker
        // raises the cancelled event, not a retrying one). The other retries as asked: not reported.
        var overrides = await Queue.CompleteAsync(
        [
            Completion(leases[0], CompletionKind.Retry) with { RetryAt = Now.AddMinutes(1), Error = Error(leases[0]) },
            Completion(leases[1], CompletionKind.Retry) with { RetryAt = Now.AddMinutes(1), Error = Error(leases[1]) },
        ], Timeout);

        Assert.Equal([new CompletionOverride(leases[0].Ref, TaskState.Cancelled)], overrides);
        Assert.Equal(TaskState.Cancelled, await StateOf(leases[0].Message.Id));
        Assert.Equal(TaskState.Retrying, await StateOf(leases[1].Message.Id));
    }

    [Fact]
    public async Task Running_task_whose_cancel_was_requested_keeps_the_outcome_it_finished_with()
    {
        await EnqueueManyAsync(2);
        var leases = await FetchAsync();
        await Queue.CancelAsync(leases[0].Message.Id, Timeout);
        await Queue.CancelAsync(leases[1].Message.Id, Timeout);

        Assert.Same(CompletionOverride.None, await SucceedAsync(leases[0], "done anyway"));
        Assert.Same(CompletionOverride.None, await DeadAsync(leases[1]));

        Assert.Equal(TaskState.Succeeded, await StateOf(leases[0].Message.Id));
        Assert.Equal(TaskState.Dead, await StateOf(leases[1].Message.Id));
    }

    [Fact]
    public async Task Cancel_of_a_running_task_twice_is_requested_both_times()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();

        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(lease.Message.Id, Timeout));
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(lease.Message.Id, Timeout));
    }

    [Fact]
    public async Task Cancel_of_a_finished_task_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await SucceedAsync(lease, "done");

        var outcome = await Queue.CancelAsync(lease.Message.Id, Timeout);

        Assert.Equal(CancelOutcome.AlreadyFinished, outcome);
        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal("done", record.Result);
    }

    [Fact]
    public async Task Cancel_of_a_cancelled_task_is_already_finished()
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        await Queue.CancelAsync(message.Id, Timeout);

        Assert.Equal(CancelOutcome.AlreadyFinished, await Queue.CancelAsync(message.Id, Timeout));
    }

    [Fact]
    public async Task Cancel_of_an_unknown_task_is_not_found()
    {
        Assert.Equal(CancelOutcome.NotFound, await Queue.CancelAsync(Guid.CreateVersion7(), Timeout));
    }

    [Fact]
    public async Task Retry_of_a_dead_task_queues_it_again_with_fresh_attempts()
    {
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        await DeadAsync(await FetchOneAsync());

        var outcome = await Queue.RetryAsync(message.Id, Timeout);

        Assert.Equal(RetryOutcome.Requeued, outcome);
        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Queued, record.State);
        Assert.Null(record.FinishedAt);
        var lease = await FetchOneAsync();
        Assert.Equal(message.Id, lease.Message.Id);
        Assert.Equal(1, lease.Attempt);
        Assert.False(lease.IsRedelivery);
    }

    [Fact]
    public async Task Retry_of_a_cancelled_task_queues_it_again()
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        await Queue.CancelAsync(message.Id, Timeout);

        Assert.Equal(RetryOutcome.Requeued, await Queue.RetryAsync(message.Id, Timeout));
        Assert.Equal(message.Id, (await FetchOneAsync()).Message.Id);
    }

    [Fact]
    public async Task Retry_of_an_expired_task_queues_it_again()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await Queue.CompleteAsync([Completion(lease, CompletionKind.Expired)], Timeout);

        Assert.Equal(RetryOutcome.Requeued, await Queue.RetryAsync(lease.Message.Id, Timeout));
        Assert.Equal(lease.Message.Id, (await FetchOneAsync()).Message.Id);
    }

    [Fact]
    public async Task Retry_of_a_dead_task_that_had_an_eta_is_ready_at_once()
    {
        var message = NewMessage() with { NotBefore = Now.AddSeconds(5) };
        await EnqueueAsync(message);
        Advance(TimeSpan.FromSeconds(5));
        await Queue.PromoteDueAsync(Timeout);
        await DeadAsync(await FetchOneAsync());

        await Queue.RetryAsync(message.Id, Timeout);

        Assert.Equal(message.Id, (await FetchOneAsync()).Message.Id);
    }

    [Fact]
    public async Task Retry_of_a_succeeded_task_is_not_retryable()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await SucceedAsync(lease);

        Assert.Equal(RetryOutcome.NotRetryable, await Queue.RetryAsync(lease.Message.Id, Timeout));
        Assert.Equal(TaskState.Succeeded, await StateOf(lease.Message.Id));
    }

    [Fact]
    public async Task Retry_of_a_waiting_or_running_task_is_not_retryable()
    {
        var queued = NewMessage();
        var scheduled = NewMessage() with { NotBefore = Now.AddMinutes(1) };
        await EnqueueAsync(queued);
        var running = await FetchOneAsync();
        await EnqueueAsync(scheduled);
        var waiting = NewMessage();
        await EnqueueAsync(waiting);

        Assert.Equal(RetryOutcome.NotRetryable, await Queue.RetryAsync(running.Message.Id, Timeout));
        Assert.Equal(RetryOutcome.NotRetryable, await Queue.RetryAsync(scheduled.Id, Timeout));
        Assert.Equal(RetryOutcome.NotRetryable, await Queue.RetryAsync(waiting.Id, Timeout));
        Assert.Equal(TaskState.Running, await StateOf(running.Message.Id));
        Assert.Equal(TaskState.Scheduled, await StateOf(scheduled.Id));
    }

    [Fact]
    public async Task Retry_of_an_unknown_task_is_not_found()
    {
        Assert.Equal(RetryOutcome.NotFound, await Queue.RetryAsync(Guid.CreateVersion7(), Timeout));
    }
}
