namespace Conveyor.Conformance;

/// <summary>Queue role: completions, lease expiry and redelivery, fencing tokens, extension and release.</summary>
public abstract class QueueLeaseConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Complete_succeeded_stores_the_result_and_finishes_the_task()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        Advance(TimeSpan.FromSeconds(2));

        await SucceedAsync(lease, """{"score":0.93}""");

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal("""{"score":0.93}""", record.Result);
        Assert.Equal(Now, record.FinishedAt);
        Assert.Equal(WorkerId, record.WorkerId); // the worker of the last attempt stays on the task
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Complete_dead_moves_the_task_to_the_dead_letter_state()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        var error = new TaskError("System.InvalidOperationException", "boom", "at Handler.Run()");

        await DeadAsync(lease, error);

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Dead, record.State);
        Assert.Equal(error, record.Error);
        Assert.Equal(Now, record.FinishedAt);
        Assert.Empty(await FetchAsync());
        Assert.Equal(1, (await Store.GetQueuesAsync(Timeout)).Single().Count(TaskState.Dead));
    }

    [Fact]
    public async Task Complete_expired_and_cancelled_finish_the_task_in_those_states()
    {
        await EnqueueManyAsync(2);
        var leases = await FetchAsync();

        await Queue.CompleteAsync([Completion(leases[0], CompletionKind.Expired), Completion(leases[1], CompletionKind.Cancelled)], Timeout);

        Assert.Equal(TaskState.Expired, await StateOf(leases[0].Message.Id));
        Assert.Equal(TaskState.Cancelled, await StateOf(leases[1].Message.Id));
        Assert.Equal(Now, (await GetAsync(leases[0].Message.Id)).FinishedAt);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Complete_many_settles_each_attempt_as_told()
    {
        await EnqueueManyAsync(3);
        var leases = await FetchAsync();

        var overrides = await Queue.CompleteAsync(
        [
            Completion(leases[0], CompletionKind.Succeeded) with { Result = "1" },
            Completion(leases[1], CompletionKind.Retry) with { RetryAt = Now.AddMinutes(1), Error = Error(leases[1]) },
            Completion(leases[2], CompletionKind.Dead) with { Error = Error(leases[2]) },
        ], Timeout);

        // All settled as asked: nothing to report, and the shared empty answer.
        Assert.Same(CompletionOverride.None, overrides);
        Assert.Equal(TaskState.Succeeded, await StateOf(leases[0].Message.Id));
        Assert.Equal(TaskState.Retrying, await StateOf(leases[1].Message.Id));
        Assert.Equal(TaskState.Dead, await StateOf(leases[2].Message.Id));
    }

    [Fact]
    public async Task Complete_of_a_batch_of_successes_reports_nothing()
    {
        await EnqueueManyAsync(5);
        var leases = await FetchAsync();
        Assert.Equal(5, leases.Count);

        var overrides = await Queue.CompleteAsync([.. leases.Select(l => Completion(l, CompletionKind.Succeeded) with { Result = "1" })], Timeout);

        // The common batch allocates no answer: the shared empty one.
        Assert.Same(CompletionOverride.None, overrides);
        foreach (var lease in leases)
        {
            Assert.Equal(TaskState.Succeeded, await StateOf(lease.Message.Id));
        }
    }

    [Fact]
    public async Task Complete_of_an_empty_batch_does_nothing()
    {
        Assert.Empty(await Queue.CompleteAsync([], Timeout));

        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Expired_lease_is_requeued_as_a_redelivery_with_the_attempt_counted()
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        var first = await FetchStartedAsync();
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));

        var requeued = (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count;

        Assert.Equal(1, requeued);
        Assert.Equal(TaskState.Queued, await StateOf(message.Id));
        var second = await FetchOneAsync();
        Assert.Equal(message.Id, second.Message.Id);
        Assert.True(second.IsRedelivery);
        Assert.Equal(2, second.Attempt);
        Assert.NotEqual(first.Token, second.Token);
    }

    [Fact]
    public async Task Lease_that_has_not_run_out_is_not_requeued()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        Advance(LeaseDuration - TimeSpan.FromSeconds(1));

        var requeued = (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count;

        Assert.Equal(0, requeued);
        Assert.Equal(TaskState.Running, await StateOf(lease.Message.Id));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Interrupted_attempts_make_the_task_dead_at_the_bound_with_an_error()
    {
        var message = NewMessage() with { MaxAttempts = 10 };
        await EnqueueAsync(message);
        for (var i = 1; i < LeaseRules.MaxInterruptions; i++)
        {
            Assert.Equal(i, (await FetchStartedAsync()).Attempt);
            Assert.Equal(1, await ExpireLeasesAsync());
            Assert.Equal(TaskState.Queued, await StateOf(message.Id));
        }
        var last = await FetchStartedAsync();
        Assert.Equal(LeaseRules.MaxInterruptions, last.Attempt);

        var settled = await ExpireLeasesAsync();

        Assert.Equal(1, settled);
        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Dead, record.State);
        Assert.Equal(LeaseRules.InterruptedErrorType, record.Error?.Type);
        Assert.Equal(Now, record.FinishedAt);
        Assert.Equal(LeaseRules.MaxInterruptions, record.Attempts);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_sweep_reports_the_tasks_it_ended_for_good_and_not_those_it_made_ready()
    {
        // The reaper raises the events of these (no worker does): dead at the bound, cancelled when a cancel was asked.
        var dies = NewMessage();
        var cancelled = NewMessage();
        await EnqueueAsync(dies);
        await EnqueueAsync(cancelled);
        for (var i = 1; i < LeaseRules.MaxInterruptions; i++)
        {
            var lease = await FetchStartedAsync();
            Assert.Equal(dies.Id, lease.Message.Id);
            Advance(LeaseDuration + TimeSpan.FromSeconds(1));
            var requeued = await Queue.RequeueExpiredLeasesAsync(Timeout);
            Assert.Equal(1, requeued.Count);
            Assert.Empty(requeued.Ended);
        }
        Assert.Equal(dies.Id, (await FetchStartedAsync()).Message.Id);
        Assert.Equal(cancelled.Id, (await FetchStartedAsync()).Message.Id);
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(cancelled.Id, Timeout));
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));

        var sweep = await Queue.RequeueExpiredLeasesAsync(Timeout);

        Assert.Equal(2, sweep.Count);
        Assert.Equal(
            [new EndedLease(dies.Id, TaskState.Dead), new EndedLease(cancelled.Id, TaskState.Cancelled)],
            sweep.Ended.OrderBy(e => e.State).ThenBy(e => e.TaskId).ToArray());
        Assert.Equal(TaskState.Dead, await StateOf(dies.Id));
        Assert.Equal(TaskState.Cancelled, await StateOf(cancelled.Id));
        var nothing = await Queue.RequeueExpiredLeasesAsync(Timeout);
        Assert.Equal(0, nothing.Count);
        Assert.Empty(nothing.Ended);
    }

    [Fact]
    public async Task Abandoning_leases_reports_the_tasks_it_ended_for_good()
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        for (var i = 1; i < LeaseRules.MaxInterruptions; i++)
        {
            await FetchStartedAsync();
            Assert.Empty((await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Ended);
        }
        await FetchStartedAsync();

        var sweep = await Queue.AbandonLeasesAsync(WorkerId, Timeout);

        Assert.Equal(1, sweep.Count);
        Assert.Equal(new EndedLease(message.Id, TaskState.Dead), Assert.Single(sweep.Ended));
    }

    [Fact]
    public async Task Interrupted_attempt_is_redelivered_even_past_max_attempts()
    {
        // MaxAttempts bounds the failures a handler reports; a crash under a started handler is redelivered (as
        // Celery's acks_late and Sidekiq's super_fetch do) until LeaseRules.MaxInterruptions.
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        await FetchStartedAsync();

        await ExpireLeasesAsync();

        var second = await FetchOneAsync();
        Assert.Equal(TaskState.Running, await StateOf(message.Id));
        Assert.True(second.IsRedelivery);
        Assert.Equal(2, second.Attempt);
        Assert.True(second.RecordStartFirst);
    }

    [Fact]
    public async Task Lease_expiry_records_an_error_for_the_lost_attempt()
    {
        var message = NewMessage() with { MaxAttempts = 2 };
        await EnqueueAsync(message);
        await FetchStartedAsync();
        await ExpireLeasesAsync();
        await FetchStartedAsync();
        await ExpireLeasesAsync();

        var record = await GetAsync(message.Id);

        Assert.Equal([1, 2], record.Errors.Select(e => e.Attempt));
        Assert.Equal(record.Error, record.Errors[^1].Error);
        Assert.Equal(Now, record.Errors[^1].At);
    }

    [Fact]
    public async Task Lease_expiry_after_a_cancel_request_cancels_the_task()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(lease.Message.Id, Timeout));
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));

        await Queue.RequeueExpiredLeasesAsync(Timeout);

        Assert.Equal(TaskState.Cancelled, await StateOf(lease.Message.Id));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Completion_naming_a_stale_lease_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var stale = await FetchStartedAsync();
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        await Queue.RequeueExpiredLeasesAsync(Timeout);
        var current = await FetchStartedAsync();

        await SucceedAsync(stale, "from the stale worker");
        await DeadAsync(stale);

        var record = await GetAsync(current.Message.Id);
        Assert.Equal(TaskState.Running, record.State);
        Assert.Null(record.Result);
        await SucceedAsync(current, "from the current worker");
        Assert.Equal("from the current worker", (await GetAsync(current.Message.Id)).Result);
    }

    [Fact]
    public async Task Completion_naming_a_lease_no_longer_held_is_reported_ignored()
    {
        await EnqueueManyAsync(2);
        var leases = await FetchAsync();
        Assert.Equal(2, leases.Count);
        Assert.Empty(await Queue.StartAsync([.. leases.Select(l => l.Ref)], Timeout));
        var stale = leases[0];
        // The other lease is extended past the one that runs out, and completed in the same batch as the stale one.
        await Queue.ExtendLeasesAsync([leases[1].Ref], TimeSpan.FromHours(1), Timeout);
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        Assert.Equal(1, (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count);

        // Taken back, not leased again: each kind is ignored and reported so.
        var ignored = CompletionOverride.Ignored(stale.Ref);
        Assert.Equal([ignored], await RetryAtAsync(stale, Now.AddMinutes(1)));
        Assert.Equal([ignored], await DeadAsync(stale));
        var cancelled = Assert.Single(await Queue.CompleteAsync([Completion(stale, CompletionKind.Cancelled)], Timeout));
        Assert.Equal(stale.Ref, cancelled.Lease);
        Assert.True(cancelled.IsIgnored);
        Assert.Equal(TaskState.Queued, await StateOf(stale.Message.Id));

        // Leased again (by another worker): a batch with a held lease reports only the stale one.
        var current = await FetchStartedAsync();
        Assert.Equal(stale.Message.Id, current.Message.Id);
        var overrides = await Queue.CompleteAsync(
            [Completion(stale, CompletionKind.Succeeded) with { Result = "stale" }, Completion(leases[1], CompletionKind.Succeeded)], Timeout);
        Assert.Equal([ignored], overrides);
        Assert.Equal(TaskState.Running, await StateOf(stale.Message.Id));
        Assert.Equal(TaskState.Succeeded, await StateOf(leases[1].Message.Id));
        Assert.Same(CompletionOverride.None, await SucceedAsync(current, "current"));
    }

    [Fact]
    public async Task Batch_with_an_old_and_the_current_lease_of_a_task_ignores_the_old_one_and_is_settled_by_the_current_one()
    {
        // The same worker leases the task again after its lease was abandoned, and both handlers end together: one batch.
        await EnqueueAsync(NewMessage());
        var old = await FetchStartedAsync();
        Assert.Equal(1, (await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Count);
        var current = await FetchStartedAsync();
        Assert.Equal(old.Message.Id, current.Message.Id);

        var overrides = await Queue.CompleteAsync(
            [Completion(old, CompletionKind.Succeeded) with { Result = "old" }, Completion(current, CompletionKind.Succeeded) with { Result = "current" }],
            Timeout);

        Assert.Equal([CompletionOverride.Ignored(old.Ref)], overrides);
        var record = await GetAsync(current.Message.Id);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal("current", record.Result);
    }

    [Fact]
    public async Task Batch_with_the_current_and_an_old_lease_of_a_cancelled_task_reports_the_cancel_for_the_current_one()
    {
        await EnqueueAsync(NewMessage() with { MaxAttempts = 5 });
        var old = await FetchStartedAsync();
        Assert.Equal(1, (await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Count);
        var current = await FetchStartedAsync();
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(current.Message.Id, Timeout));

        // The current lease first: the old one, after it, must not take its answer.
        var overrides = await Queue.CompleteAsync(
        [
            Completion(current, CompletionKind.Retry) with { RetryAt = Now.AddMinutes(1), Error = Error(current) },
            Completion(old, CompletionKind.Retry) with { RetryAt = Now.AddMinutes(1), Error = Error(old) },
        ], Timeout);

        Assert.Equal(
            [new CompletionOverride(current.Ref, TaskState.Cancelled), CompletionOverride.Ignored(old.Ref)],
            overrides.OrderBy(o => o.IsIgnored).ToArray());
        Assert.Equal(TaskState.Cancelled, await StateOf(current.Message.Id));
    }

    [Fact]
    public async Task Completion_naming_a_wrong_token_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        var forged = lease with { Token = lease.Token + 1 };

        Assert.Equal([CompletionOverride.Ignored(forged.Ref)], await SucceedAsync(forged));

        Assert.Equal(TaskState.Running, await StateOf(lease.Message.Id));
    }

    [Fact]
    public async Task Second_completion_of_the_same_lease_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await SucceedAsync(lease, "first");

        Assert.Equal([CompletionOverride.Ignored(lease.Ref)], await DeadAsync(lease));

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal("first", record.Result);
    }

    [Fact]
    public async Task Extension_naming_a_stale_lease_is_reported_lost_and_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var stale = await FetchStartedAsync();
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        await Queue.RequeueExpiredLeasesAsync(Timeout);
        var current = await FetchStartedAsync();

        var extension = await Queue.ExtendLeasesAsync([stale.Ref], TimeSpan.FromHours(1), Timeout);

        Assert.Equal([stale.Ref], extension.Lost);
        Assert.Empty(extension.CancelRequested);
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        Assert.Equal(1, (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count);
        Assert.Equal(3, (await FetchOneAsync()).Attempt); // two interrupted attempts counted
        Assert.NotEqual(stale.Token, current.Token);
    }

    [Fact]
    public async Task Extension_of_a_finished_task_is_reported_lost()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await SucceedAsync(lease);

        var extension = await Queue.ExtendLeasesAsync([lease.Ref], LeaseDuration, Timeout);

        Assert.Equal([lease.Ref], extension.Lost);
    }

    [Fact]
    public async Task Extended_lease_outlives_its_first_expiry()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        Advance(LeaseDuration - TimeSpan.FromSeconds(5));

        var extension = await Queue.ExtendLeasesAsync([lease.Ref], LeaseDuration, Timeout);
        Advance(LeaseDuration - TimeSpan.FromSeconds(5));

        Assert.Empty(extension.Lost);
        Assert.Empty(extension.CancelRequested);
        Assert.Equal(0, (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count);
        Assert.Equal(TaskState.Running, await StateOf(lease.Message.Id));
        Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(1, (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count);
    }

    [Fact]
    public async Task Extension_of_many_leases_reports_only_the_lost_ones()
    {
        await EnqueueManyAsync(3);
        var leases = await FetchAsync();
        await SucceedAsync(leases[1]);

        var extension = await Queue.ExtendLeasesAsync(leases.Select(l => l.Ref).ToList(), LeaseDuration, Timeout);

        Assert.Equal([leases[1].Ref], extension.Lost);
    }

    [Fact]
    public async Task Extension_of_no_leases_reports_nothing()
    {
        var extension = await Queue.ExtendLeasesAsync([], LeaseDuration, Timeout);

        Assert.Empty(extension.Lost);
        Assert.Empty(extension.CancelRequested);
    }

    [Fact]
    public async Task Completion_after_extension_is_accepted()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await Queue.ExtendLeasesAsync([lease.Ref], LeaseDuration, Timeout);

        await SucceedAsync(lease);

        Assert.Equal(TaskState.Succeeded, await StateOf(lease.Message.Id));
    }

    [Fact]
    public async Task Released_message_is_ready_again_at_once_with_its_attempt_not_spent()
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        var first = await FetchOneAsync();

        await Queue.ReleaseAsync([first.Ref], Timeout);

        Assert.Equal(TaskState.Queued, await StateOf(message.Id));
        var second = await FetchOneAsync();
        Assert.Equal(message.Id, second.Message.Id);
        Assert.Equal(1, second.Attempt);
        Assert.False(second.IsRedelivery);
    }

    [Fact]
    public async Task Released_message_keeps_its_place_before_later_messages()
    {
        var ids = await EnqueueManyAsync(3);
        var leases = await FetchAsync(max: 2);

        await Queue.ReleaseAsync(leases.Select(l => l.Ref).ToList(), Timeout);

        Assert.Equal(ids, (await FetchAsync()).Select(l => l.Message.Id));
    }

    [Fact]
    public async Task Release_naming_a_stale_lease_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var stale = await FetchStartedAsync();
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        await Queue.RequeueExpiredLeasesAsync(Timeout);
        var current = await FetchStartedAsync();

        await Queue.ReleaseAsync([stale.Ref], Timeout);

        Assert.Equal(TaskState.Running, await StateOf(current.Message.Id));
        Assert.Empty(await FetchAsync());
        Assert.Equal(2, (await GetAsync(current.Message.Id)).Attempts);
    }

    [Fact]
    public async Task Release_of_a_finished_task_changes_nothing()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await SucceedAsync(lease);

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        Assert.Equal(TaskState.Succeeded, await StateOf(lease.Message.Id));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Redelivered_message_that_then_retries_is_not_marked_redelivered_again()
    {
        await EnqueueAsync(NewMessage());
        await FetchStartedAsync();
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        await Queue.RequeueExpiredLeasesAsync(Timeout);
        var redelivered = await FetchOneAsync();
        Assert.True(redelivered.IsRedelivery);

        await RetryAtAsync(redelivered, Now);
        await Queue.PromoteDueAsync(Timeout);

        var third = await FetchOneAsync();
        Assert.False(third.IsRedelivery);
        Assert.Equal(3, third.Attempt);
    }
}
