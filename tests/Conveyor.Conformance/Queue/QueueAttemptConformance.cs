namespace Conveyor.Conformance;

/// <summary>Queue role: an attempt is spent when its handler starts (<see cref="IQueueBackend.StartAsync"/>), and a lease
/// that ends without an outcome is settled by <see cref="LeaseRules"/>.</summary>
public abstract class QueueAttemptConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Fresh_lease_does_not_ask_for_its_start_to_be_recorded_first()
    {
        await EnqueueAsync(NewMessage());

        var lease = await FetchOneAsync();

        Assert.False(lease.RecordStartFirst);
        Assert.False(lease.IsRedelivery);
        Assert.Equal(1, lease.Attempt);
    }

    [Fact]
    public async Task Expired_lease_that_never_started_comes_back_with_its_attempt_unspent_and_no_error()
    {
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        await FetchOneAsync();

        Assert.Equal(1, await ExpireLeasesAsync());

        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Queued, record.State);
        Assert.Equal(0, record.Attempts);
        Assert.Empty(record.Errors);
        Assert.Null(record.Error);
        var again = await FetchOneAsync();
        Assert.Equal(1, again.Attempt);
        Assert.False(again.IsRedelivery);
        Assert.True(again.RecordStartFirst);
    }

    [Fact]
    public async Task Lease_that_never_starts_is_never_dead_however_often_it_runs_out()
    {
        // What a crash loop of workers holding a full prefetch does to tasks that never ran: none may be dead-lettered.
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        for (var i = 0; i < LeaseRules.MaxInterruptions + 3; i++)
        {
            Assert.Equal(1, (await FetchOneAsync()).Attempt);
            Assert.Equal(1, await ExpireLeasesAsync());
        }

        var last = await FetchStartedAsync();
        await SucceedAsync(last, "ran once");

        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal(1, record.Attempts);
        Assert.Empty(record.Errors);
    }

    [Fact]
    public async Task Expired_unstarted_lease_keeps_its_place_before_later_messages()
    {
        var ids = await EnqueueManyAsync(3);
        await FetchAsync(max: 2);

        await ExpireLeasesAsync();

        Assert.Equal(ids, (await FetchAsync()).Select(l => l.Message.Id));
    }

    [Fact]
    public async Task Start_of_held_leases_reports_none_lost()
    {
        await EnqueueManyAsync(3);
        var leases = await FetchAsync();

        var lost = await Queue.StartAsync(leases.Select(l => l.Ref).ToList(), Timeout);

        Assert.Empty(lost);
        Assert.All(leases, l => Assert.Equal(1, l.Attempt));
    }

    [Fact]
    public async Task Start_of_no_leases_reports_nothing() => Assert.Empty(await Queue.StartAsync([], Timeout));

    [Fact]
    public async Task Start_of_a_stale_or_settled_lease_is_reported_lost_and_changes_nothing()
    {
        var ids = await EnqueueManyAsync(2);
        var leases = await FetchAsync();
        await SucceedAsync(leases[0], "done");
        await ExpireLeasesAsync();
        var current = await FetchOneAsync();
        Assert.Equal(ids[1], current.Message.Id);

        var lost = await Queue.StartAsync([leases[0].Ref, leases[1].Ref], Timeout);

        Assert.Equal([leases[0].Ref, leases[1].Ref], lost.OrderBy(l => ids.IndexOf(l.TaskId)));
        Assert.Equal(TaskState.Succeeded, await StateOf(ids[0]));
        // The current lease did not start by the stale call: running out, it spends nothing.
        await ExpireLeasesAsync();
        Assert.Equal(0, (await GetAsync(ids[1])).Attempts);
    }

    [Fact]
    public async Task Starting_a_lease_twice_counts_one_attempt()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchStartedAsync();

        Assert.Empty(await Queue.StartAsync([lease.Ref], Timeout));
        await ExpireLeasesAsync();

        Assert.Equal(2, (await FetchOneAsync()).Attempt);
    }

    [Fact]
    public async Task Released_lease_that_started_is_an_interrupted_attempt()
    {
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        var lease = await FetchStartedAsync();

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Queued, record.State);
        Assert.Equal(1, record.Attempts);
        Assert.Equal(LeaseRules.InterruptedErrorType, Assert.Single(record.Errors).Error.Type);
        var again = await FetchOneAsync();
        Assert.True(again.IsRedelivery);
        Assert.Equal(2, again.Attempt);
    }

    [Fact]
    public async Task Abandon_ends_every_lease_of_that_worker_and_no_other()
    {
        var ids = await EnqueueManyAsync(3);
        var mine = await FetchAsync(max: 2);
        var theirs = Assert.Single(await Queue.FetchAsync(Request(1) with { WorkerId = "worker-2" }, Timeout));
        Assert.Empty(await Queue.StartAsync([mine[0].Ref, theirs.Ref], Timeout));

        var ended = (await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Count;

        Assert.Equal(2, ended);
        var started = await GetAsync(ids[0]);
        Assert.Equal(TaskState.Queued, started.State);
        Assert.Equal(1, started.Attempts);
        Assert.Equal(LeaseRules.InterruptedErrorType, started.Error?.Type);
        var unstarted = await GetAsync(ids[1]);
        Assert.Equal(TaskState.Queued, unstarted.State);
        Assert.Equal(0, unstarted.Attempts);
        Assert.Empty(unstarted.Errors);
        Assert.Equal(TaskState.Running, await StateOf(ids[2]));
        var again = await FetchAsync();
        Assert.Equal([ids[0], ids[1]], again.Select(l => l.Message.Id));
        Assert.Equal([true, false], again.Select(l => l.IsRedelivery));
        Assert.Equal([2, 1], again.Select(l => l.Attempt));
    }

    [Fact]
    public async Task Abandon_of_a_worker_holding_nothing_ends_nothing()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();

        Assert.Equal(0, (await Queue.AbandonLeasesAsync("worker-that-holds-nothing", Timeout)).Count);
        Assert.Equal(TaskState.Running, await StateOf(lease.Message.Id));
        Assert.Empty(await Queue.StartAsync([lease.Ref], Timeout));
    }

    [Fact]
    public async Task Abandoned_lease_whose_cancel_was_asked_is_cancelled()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchStartedAsync();
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(lease.Message.Id, Timeout));

        Assert.Equal(1, (await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Count);

        Assert.Equal(TaskState.Cancelled, await StateOf(lease.Message.Id));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Abandoned_lease_no_longer_completes()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchStartedAsync();
        await Queue.AbandonLeasesAsync(WorkerId, Timeout);

        await SucceedAsync(lease, "from the gone worker");

        Assert.Equal(TaskState.Queued, await StateOf(lease.Message.Id));
        Assert.Equal([lease.Ref], (await Queue.ExtendLeasesAsync([lease.Ref], LeaseDuration, Timeout)).Lost);
    }

    [Fact]
    public async Task Interrupted_attempt_then_failure_dead_letters_by_max_attempts()
    {
        // The interrupted attempt counts: the redelivery is attempt 2, past MaxAttempts 1, so its handler's failure is final.
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        await FetchStartedAsync();
        await ExpireLeasesAsync();
        var second = await FetchStartedAsync();

        await DeadAsync(second);

        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Dead, record.State);
        Assert.Equal(2, record.Attempts);
        Assert.Equal([1, 2], record.Errors.Select(e => e.Attempt));
    }

    [Fact]
    public async Task Manual_retry_of_a_task_dead_of_interruptions_gives_it_a_fresh_set()
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        for (var i = 0; i < LeaseRules.MaxInterruptions; i++)
        {
            await FetchStartedAsync();
            await ExpireLeasesAsync();
        }
        Assert.Equal(TaskState.Dead, await StateOf(message.Id));

        Assert.Equal(RetryOutcome.Requeued, await Queue.RetryAsync(message.Id, Timeout));

        var fresh = await FetchStartedAsync();
        Assert.Equal(1, fresh.Attempt);
        Assert.False(fresh.IsRedelivery);
        Assert.False(fresh.RecordStartFirst);
        // One interruption of the new run is not the last.
        await ExpireLeasesAsync();
        Assert.Equal(TaskState.Queued, await StateOf(message.Id));
    }

    [Fact]
    public async Task Retry_of_an_attempt_that_never_started_does_not_spend_it()
    {
        // What a worker with no handler for the task reports: the task waits, its attempts intact, with the reason.
        var message = NewMessage() with { MaxAttempts = 1 };
        await EnqueueAsync(message);
        var lease = await FetchOneAsync();
        var noHandler = new TaskError("Conveyor.NoHandler", "no handler here");

        await Queue.CompleteAsync([Completion(lease, CompletionKind.Retry) with { RetryAt = Now.AddSeconds(10), Error = noHandler, Unstarted = true }], Timeout);

        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Retrying, record.State);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(noHandler, record.Error);
        Advance(TimeSpan.FromSeconds(11));
        await Queue.PromoteDueAsync(Timeout);
        var again = await FetchStartedAsync();
        Assert.Equal(1, again.Attempt);
        await SucceedAsync(again, "ran");
        Assert.Equal(1, (await GetAsync(message.Id)).Attempts);
    }

    [Fact]
    public async Task Retry_with_headers_stores_them_and_its_next_lease_delivers_them()
    {
        // How the limits stage marks a start time it reserved for a task it puts back (docs/limits.md).
        var message = NewMessage() with { Headers = new Dictionary<string, string> { ["trace"] = "t-1" } };
        await EnqueueAsync(message);
        var lease = await FetchOneAsync();
        // With a canonical traceparent too: stored in the compact form, the others after it.
        var headers = new Dictionary<string, string> { ["trace"] = "t-1", ["conveyor-rate-slot"] = "1:123", ["traceparent"] = CanonicalTraceParent };

        await Queue.CompleteAsync([Completion(lease, CompletionKind.Retry) with { RetryAt = Now.AddSeconds(5), Unstarted = true, Headers = headers }], Timeout);

        var record = await GetAsync(message.Id);
        Assert.Equal(headers, record.Headers);
        Assert.Null(record.Error);
        Assert.Equal(0, record.Attempts);
        Advance(TimeSpan.FromSeconds(5));
        await Queue.PromoteDueAsync(Timeout);
        var again = await FetchOneAsync();
        Assert.Equal(1, again.Attempt);
        Assert.Equal(headers, again.Message.Headers);
        Assert.Equal(message.Args, again.Message.Args);
        Assert.Equal(message.Task, again.Message.Task);
        // Headers left null keep what is stored.
        await RetryAtAsync(again, Now);
        await Queue.PromoteDueAsync(Timeout);
        Assert.Equal(headers, (await FetchOneAsync()).Message.Headers);
    }

    [Fact]
    public async Task Retry_with_headers_as_stored_keeps_the_exception_lists_of_the_retry_policy()
    {
        var message = NewMessage() with { Retry = RetryPolicy.Default.WithRetryOn(typeof(TimeoutException)).WithNeverRetryOn(typeof(ArgumentException)) };
        await EnqueueAsync(message);
        var lease = await FetchOneAsync();
        var headers = new Dictionary<string, string> { ["conveyor-rate-slot"] = "1:123" };

        await Queue.CompleteAsync([Completion(lease, CompletionKind.Retry) with
        {
            RetryAt = Now, Unstarted = true, Headers = RetryHeaders.ToStored(lease.Message with { Headers = headers }),
        }], Timeout);
        await Queue.PromoteDueAsync(Timeout);

        var again = await FetchOneAsync();
        Assert.Equal(headers, again.Message.Headers);
        Assert.Equal(message.Retry.RetryOn, again.Message.Retry.RetryOn);
        Assert.Equal(message.Retry.NeverRetryOn, again.Message.Retry.NeverRetryOn);
        Assert.Equal(headers, (await GetAsync(message.Id)).Headers);
    }

    [Fact]
    public async Task Completion_not_marked_unstarted_spends_the_attempt_even_without_a_recorded_start()
    {
        // The worker leaves out the start of an attempt whose completion goes in the same batch.
        await EnqueueAsync(NewMessage() with { MaxAttempts = 3 });
        var lease = await FetchOneAsync();

        await RetryAtAsync(lease, Now);
        await Queue.PromoteDueAsync(Timeout);

        Assert.Equal(2, (await FetchOneAsync()).Attempt);
    }
}
