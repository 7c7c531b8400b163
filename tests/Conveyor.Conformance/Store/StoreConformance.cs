namespace Conveyor.Conformance;

/// <summary>Store role: a task with its history, queue statistics and retention.</summary>
public abstract class StoreConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Get_of_an_unknown_task_returns_null()
    {
        Assert.Null(await Store.GetAsync(Guid.CreateVersion7(), Timeout));
    }

    [Fact]
    public async Task GetStates_returns_the_state_of_each_known_task_and_leaves_out_unknown_ones()
    {
        var ids = await EnqueueManyAsync(3);
        var scheduled = (await EnqueueAsync(NewMessage() with { NotBefore = Now.AddHours(1) })).Id;
        var leases = await FetchAsync(2);
        await SucceedAsync(leases[0]);
        var unknown = Guid.CreateVersion7();

        var states = await Store.GetStatesAsync([.. ids, scheduled, unknown], Timeout);

        Assert.Equal(4, states.Count);
        Assert.Equal(TaskState.Succeeded, states[leases[0].Message.Id]);
        Assert.Equal(TaskState.Running, states[leases[1].Message.Id]);
        Assert.Equal(TaskState.Queued, states[ids.Single(id => id != leases[0].Message.Id && id != leases[1].Message.Id)]);
        Assert.Equal(TaskState.Scheduled, states[scheduled]);
        Assert.False(states.ContainsKey(unknown));
        Assert.Empty(await Store.GetStatesAsync([], Timeout));
    }

    [Fact]
    public async Task GetOldestReady_reports_each_queue_with_queued_tasks_and_when_its_oldest_became_ready()
    {
        var before = Now.AddSeconds(-1);
        await EnqueueManyAsync(2, "mail");
        await EnqueueManyAsync(1, "reports");
        await EnqueueAsync(NewMessage("later") with { NotBefore = Now.AddHours(1) });
        await EnqueueManyAsync(1, "busy");
        Assert.Single(await FetchAsync(1, "busy"));
        var after = Now.AddSeconds(1);

        var oldest = await Store.GetOldestReadyAsync(Timeout);

        // Scheduled and running tasks are not ready: "later" and "busy" have none waiting.
        Assert.Equal(["mail", "reports"], oldest.Keys.Order(StringComparer.Ordinal));
        Assert.All(oldest.Values, at => Assert.InRange(at, before, after));
    }

    [Fact]
    public async Task CountWaitingByTask_counts_waiting_tasks_per_queue_name_and_state()
    {
        await EnqueueAsync(NewMessage("mail", task: "mail.send"));
        await EnqueueAsync(NewMessage("mail", task: "mail.send"));
        await EnqueueAsync(NewMessage("mail", task: "mail.send") with { NotBefore = Now.AddHours(1) });
        await EnqueueAsync(NewMessage("reports", task: "reports.build"));
        await EnqueueAsync(NewMessage("reports", task: "reports.build"));
        await EnqueueAsync(NewMessage("reports", task: "reports.build"));
        var leases = await FetchAsync(3, "reports");
        Assert.Equal(3, leases.Count);
        await RetryAtAsync(leases[0], Now.AddMinutes(5));
        await SucceedAsync(leases[1]);

        var waiting = await Store.CountWaitingByTaskAsync(Timeout);

        // Running and finished tasks do not wait: one reports.build is retrying, one ran, one runs.
        Assert.True(waiting.Complete);
        Assert.Equal(
            ["mail/mail.send/Queued=2", "mail/mail.send/Scheduled=1", "reports/reports.build/Retrying=1"],
            waiting.Counts.Select(c => $"{c.Queue}/{c.Task}/{c.State}={c.Count}").Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task The_worker_of_the_last_attempt_stays_on_the_task_after_it_finishes()
    {
        await EnqueueManyAsync(3);
        var leases = await Queue.FetchAsync(Request(3) with { WorkerId = "worker-7" }, Timeout);
        Assert.Equal(3, leases.Count);
        Assert.Equal("worker-7", (await GetAsync(leases[0].Message.Id)).WorkerId);

        await SucceedAsync(leases[0]);
        await DeadAsync(leases[1]);
        await RetryAtAsync(leases[2], Now.AddMinutes(1));

        Assert.Equal("worker-7", (await GetAsync(leases[0].Message.Id)).WorkerId);
        Assert.Equal("worker-7", (await GetAsync(leases[1].Message.Id)).WorkerId);
        Assert.Equal("worker-7", (await GetAsync(leases[2].Message.Id)).WorkerId);
    }

    [Fact]
    public async Task Get_returns_every_field_of_a_new_task()
    {
        var message = NewMessage("imports", priority: -4, task: "aip.ingest") with
        {
            Args = """{"path":"/in/1.zip"}""",
            NotBefore = Now.AddMinutes(1),
            ExpiresAt = Now.AddDays(1),
            MaxAttempts = 3,
            Retry = RetryPolicy.Fixed(TimeSpan.FromSeconds(30), 0.1).WithRetryOn<TimeoutException>(),
            IdempotencyKey = "ingest-1",
            Headers = new Dictionary<string, string> { ["parent"] = "p-1" },
        };
        await EnqueueAsync(message);

        var record = await GetAsync(message.Id);

        Assert.Equal(message.Id, record.Id);
        Assert.Equal("aip.ingest", record.Task);
        Assert.Equal("imports", record.Queue);
        Assert.Equal(TaskState.Scheduled, record.State);
        Assert.Equal(-4, record.Priority);
        Assert.Equal(message.Args, record.Args);
        Assert.Null(record.Result);
        Assert.Null(record.Error);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(3, record.MaxAttempts);
        Assert.Equal(message.Retry, record.Retry);
        Assert.Equal(message.CreatedAt, record.CreatedAt);
        Assert.Equal(message.NotBefore, record.NotBefore);
        Assert.Equal(message.ExpiresAt, record.ExpiresAt);
        Assert.Null(record.StartedAt);
        Assert.Null(record.FinishedAt);
        Assert.Equal("ingest-1", record.IdempotencyKey);
        Assert.Equal(message.Headers, record.Headers);
        Assert.Null(record.WorkerId);
        Assert.False(record.CancelRequested);
        Assert.Equal([new TaskTransition(TaskState.Scheduled, Now)], record.Transitions);
        Assert.Empty(record.Errors);
    }

    [Fact]
    public async Task Get_returns_the_full_history_of_a_task_that_failed_then_succeeded()
    {
        var message = NewMessage();
        var enqueuedAt = Now;
        await EnqueueAsync(message);
        Advance(TimeSpan.FromSeconds(1));
        var startedFirst = Now;
        var first = await FetchOneAsync();
        Advance(TimeSpan.FromSeconds(1));
        var failedAt = Now;
        var firstError = new TaskError("System.IO.IOException", "disk full", "stack 1");
        await RetryAtAsync(first, Now.AddSeconds(10), firstError);
        Advance(TimeSpan.FromSeconds(10));
        var promotedAt = Now;
        await Queue.PromoteDueAsync(Timeout);
        Advance(TimeSpan.FromSeconds(1));
        var startedSecond = Now;
        var second = await FetchOneAsync();
        Advance(TimeSpan.FromSeconds(1));
        var succeededAt = Now;
        await SucceedAsync(second, "42");

        var record = await GetAsync(message.Id);

        Assert.Equal(
        [
            new TaskTransition(TaskState.Queued, enqueuedAt),
            new TaskTransition(TaskState.Running, startedFirst),
            new TaskTransition(TaskState.Retrying, failedAt),
            new TaskTransition(TaskState.Queued, promotedAt),
            new TaskTransition(TaskState.Running, startedSecond),
            new TaskTransition(TaskState.Succeeded, succeededAt),
        ], record.Transitions);
        Assert.Equal([new AttemptError(1, failedAt, firstError)], record.Errors);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal("42", record.Result);
        Assert.Equal(2, record.Attempts);
        Assert.Equal(startedSecond, record.StartedAt);
        Assert.Equal(succeededAt, record.FinishedAt);
        // What the success leaves as it was, and what it clears: the last failure's error, the retry's wait.
        Assert.Equal(firstError, record.Error);
        Assert.Null(record.NotBefore);
        Assert.NotNull(record.WorkerId);
    }

    [Fact]
    public async Task Get_returns_one_error_per_failed_attempt_oldest_first()
    {
        var message = NewMessage() with { MaxAttempts = 3 };
        await EnqueueAsync(message);
        var errors = new List<AttemptError>();
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var lease = await FetchOneAsync();
            Assert.Equal(attempt, lease.Attempt);
            var error = new TaskError("Test.Failure", $"failure {attempt}", null);
            errors.Add(new AttemptError(attempt, Now, error));
            if (attempt < 3)
            {
                await RetryAtAsync(lease, Now.AddSeconds(1), error);
                Advance(TimeSpan.FromSeconds(1));
                await Queue.PromoteDueAsync(Timeout);
            }
            else
            {
                await DeadAsync(lease, error);
            }
        }

        var record = await GetAsync(message.Id);

        Assert.Equal(errors, record.Errors);
        Assert.Equal(errors[^1].Error, record.Error);
        Assert.Equal(TaskState.Dead, record.State);
        Assert.Equal(
            [TaskState.Queued, TaskState.Running, TaskState.Retrying, TaskState.Queued, TaskState.Running,
             TaskState.Retrying, TaskState.Queued, TaskState.Running, TaskState.Dead],
            record.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task Get_shows_the_worker_holding_a_running_task()
    {
        await EnqueueAsync(NewMessage());
        var lease = Assert.Single(await Queue.FetchAsync(Request(1) with { WorkerId = "host-a:7" }, Timeout));

        Assert.Equal("host-a:7", (await GetAsync(lease.Message.Id)).WorkerId);
    }

    [Fact]
    public async Task Get_queues_counts_tasks_per_state_and_queue()
    {
        await EnqueueManyAsync(3, "a");
        await EnqueueAsync(NewMessage("a") with { NotBefore = Now.AddMinutes(1) });
        await EnqueueManyAsync(2, "b");
        var leases = await FetchAsync(2, "b");
        await SucceedAsync(leases[0]);
        await DeadAsync(await FetchOneAsync("a"));

        var queues = await Store.GetQueuesAsync(Timeout);

        var a = Assert.Single(queues, q => q.Name == "a");
        Assert.Equal(2, a.Count(TaskState.Queued));
        Assert.Equal(1, a.Count(TaskState.Scheduled));
        Assert.Equal(1, a.Count(TaskState.Dead));
        Assert.Equal(0, a.Count(TaskState.Running));
        var b = Assert.Single(queues, q => q.Name == "b");
        Assert.Equal(1, b.Count(TaskState.Running));
        Assert.Equal(1, b.Count(TaskState.Succeeded));
        Assert.Equal(0, b.Count(TaskState.Queued));
    }

    [Fact]
    public async Task Get_queues_counts_the_depth_exactly_and_finished_tasks_exactly_or_as_lower_bounds_past_a_limit()
    {
        // depth: 3 queued, 1 scheduled, 1 running, 1 retrying, 1 dead.
        await EnqueueManyAsync(6, "depth");
        await EnqueueAsync(NewMessage("depth") with { NotBefore = Now.AddHours(1) });
        var depth = await FetchAsync(3, "depth");
        await RetryAtAsync(depth[1], Now.AddMinutes(5));
        await DeadAsync(depth[2]);
        // done: 5 succeeded, 3 cancelled (one before it ran), 1 expired, 1 dead.
        var done = await EnqueueManyAsync(11, "done");
        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(done[^1], Timeout));
        var leases = await FetchAsync(10, "done");
        Assert.Equal(10, leases.Count);
        await Queue.CompleteAsync(
        [
            .. leases.Take(5).Select(l => Completion(l, CompletionKind.Succeeded)),
            Completion(leases[5], CompletionKind.Cancelled), Completion(leases[6], CompletionKind.Cancelled),
            Completion(leases[7], CompletionKind.Expired),
        ], Timeout);
        await DeadAsync(leases[8]);
        await DeadAsync(leases[9]);
        var expected = new Dictionary<(string, TaskState), long>
        {
            [("depth", TaskState.Queued)] = 3,
            [("depth", TaskState.Scheduled)] = 1,
            [("depth", TaskState.Running)] = 1,
            [("depth", TaskState.Retrying)] = 1,
            [("depth", TaskState.Dead)] = 1,
            [("done", TaskState.Succeeded)] = 5,
            [("done", TaskState.Cancelled)] = 3,
            [("done", TaskState.Expired)] = 1,
            [("done", TaskState.Dead)] = 2,
        };

        // 13 finished tasks, 4 read at most: a store may stop early, and then says so.
        var limited = await Store.GetQueuesAsync(4, Timeout);
        foreach (var name in (string[])["depth", "done"])
        {
            var queue = Assert.Single(limited, q => q.Name == name);
            Assert.All(queue.LowerBounds, s => Assert.Contains(s, (TaskState[])[TaskState.Succeeded, TaskState.Cancelled, TaskState.Expired]));
            foreach (var state in Enum.GetValues<TaskState>())
            {
                var count = expected.GetValueOrDefault((name, state));
                if (queue.IsLowerBound(state))
                {
                    Assert.InRange(queue.Count(state), 0, count);
                }
                else
                {
                    Assert.True(count == queue.Count(state), $"{name} {state}: {queue.Count(state)}, expected {count}");
                }
            }
        }

        // Above the number of finished tasks, every count is exact.
        var all = await Store.GetQueuesAsync(100, Timeout);
        Assert.All(all, q => Assert.Empty(q.LowerBounds));
        Assert.Equal(
            expected.OrderBy(e => e.Key.Item1, StringComparer.Ordinal).ThenBy(e => e.Key.Item2).Select(e => $"{e.Key.Item1} {e.Key.Item2}={e.Value}"),
            all.Where(q => q.Name is "depth" or "done").SelectMany(q => q.Counts.Where(c => c.Value > 0).OrderBy(c => c.Key).Select(c => $"{q.Name} {c.Key}={c.Value}")));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.GetQueuesAsync(0, Timeout));
    }

    [Fact]
    public async Task Get_queues_shows_which_are_paused()
    {
        await EnqueueAsync(NewMessage("a"));
        await EnqueueAsync(NewMessage("b"));

        await Queue.PauseQueueAsync("b", Timeout);

        var queues = await Store.GetQueuesAsync(Timeout);
        Assert.False(queues.Single(q => q.Name == "a").Paused);
        Assert.True(queues.Single(q => q.Name == "b").Paused);
    }

    [Fact]
    public async Task Get_queues_lists_a_paused_queue_that_has_no_tasks()
    {
        await Queue.PauseQueueAsync("empty", Timeout);

        var queue = Assert.Single(await Store.GetQueuesAsync(Timeout), q => q.Name == "empty");

        Assert.True(queue.Paused);
        Assert.Equal(0, queue.Count(TaskState.Queued));
    }

    [Fact]
    public async Task Queue_stays_listed_after_its_tasks_are_purged()
    {
        await EnqueueAsync(NewMessage("reports"));
        await SucceedAsync(await FetchOneAsync("reports"));
        Advance(TimeSpan.FromMinutes(1));

        await Store.PurgeFinishedAsync(Now, 100, Timeout);

        var queue = Assert.Single(await Store.GetQueuesAsync(Timeout), q => q.Name == "reports");
        Assert.Equal(0, queue.Count(TaskState.Succeeded));
    }

    [Fact]
    public async Task Queue_first_named_by_a_failed_batch_is_known_once_an_enqueue_succeeds()
    {
        var message = NewMessage("reports");
        await Assert.ThrowsAnyAsync<Exception>(() => Queue.EnqueueAsync([message, message], Timeout));
        await EnqueueAsync(NewMessage("reports"));
        await SucceedAsync(await FetchOneAsync("reports"));
        Advance(TimeSpan.FromMinutes(1));

        await Store.PurgeFinishedAsync(Now, 100, Timeout);

        Assert.Single(await Store.GetQueuesAsync(Timeout), q => q.Name == "reports");
    }

    [Fact]
    public async Task Get_queues_of_an_empty_backend_lists_no_queue_with_tasks()
    {
        var queues = await Store.GetQueuesAsync(Timeout);

        Assert.All(queues, q => Assert.All(q.Counts.Values, n => Assert.Equal(0, n)));
    }

    [Fact]
    public async Task Purge_finished_deletes_tasks_finished_before_the_cutoff()
    {
        await EnqueueManyAsync(3);
        var leases = await FetchAsync();
        await SucceedAsync(leases[0]);
        await DeadAsync(leases[1]);
        await Queue.CompleteAsync([Completion(leases[2], CompletionKind.Expired)], Timeout);
        var cancelled = NewMessage();
        await EnqueueAsync(cancelled);
        await Queue.CancelAsync(cancelled.Id, Timeout);
        Advance(TimeSpan.FromHours(1));

        var purged = await Store.PurgeFinishedAsync(Now, 100, Timeout);

        Assert.Equal(4, purged);
        foreach (var lease in leases)
        {
            Assert.Null(await Store.GetAsync(lease.Message.Id, Timeout));
        }
        Assert.Null(await Store.GetAsync(cancelled.Id, Timeout));
    }

    [Fact]
    public async Task Purge_finished_keeps_unfinished_and_recently_finished_tasks()
    {
        var waiting = NewMessage();
        var scheduled = NewMessage() with { NotBefore = Now.AddDays(1) };
        await Queue.EnqueueAsync([waiting, scheduled], Timeout);
        await EnqueueManyAsync(2);
        var leases = await FetchAsync(3);
        var running = leases[1];
        await RetryAtAsync(leases[2], Now.AddDays(1));
        var old = leases[0];
        await SucceedAsync(old);
        Advance(TimeSpan.FromHours(2));
        var cutoff = Now;
        await EnqueueAsync(NewMessage());
        var recent = await FetchOneAsync();
        await SucceedAsync(recent);
        Advance(TimeSpan.FromHours(2));

        var purged = await Store.PurgeFinishedAsync(cutoff, 100, Timeout);

        Assert.Equal(1, purged);
        Assert.Null(await Store.GetAsync(old.Message.Id, Timeout));
        Assert.Equal(TaskState.Succeeded, await StateOf(recent.Message.Id));
        Assert.Equal(TaskState.Running, await StateOf(running.Message.Id));
        Assert.Equal(TaskState.Retrying, await StateOf(leases[2].Message.Id));
        Assert.Equal(TaskState.Scheduled, await StateOf(scheduled.Id));
    }

    [Fact]
    public async Task Purge_finished_deletes_at_most_the_count_asked()
    {
        await EnqueueManyAsync(5);
        foreach (var lease in await FetchAsync())
        {
            await SucceedAsync(lease);
        }
        Advance(TimeSpan.FromMinutes(1));

        Assert.Equal(3, await Store.PurgeFinishedAsync(Now, 3, Timeout));
        Assert.Equal(2, await Store.PurgeFinishedAsync(Now, 3, Timeout));
        Assert.Equal(0, await Store.PurgeFinishedAsync(Now, 3, Timeout));
        Assert.Equal(0, (await Store.GetQueuesAsync(Timeout)).Sum(q => q.Count(TaskState.Succeeded)));
    }
}
