using Conveyor.Backends;

namespace Conveyor.Conformance;

/// <summary>Store role: deleting finished tasks by id (<see cref="ITaskStore.DeleteAsync"/>), and the bulk retry and purge
/// by filter that the core builds on it and on the task list (<see cref="BulkTaskOperations"/>).</summary>
public abstract class BulkTaskConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Delete_removes_the_tasks_in_the_given_state_and_leaves_the_others()
    {
        var dead = await DeadTasksAsync(2);
        var succeeded = await FinishedTaskAsync(CompletionKind.Succeeded);
        var running = (await EnqueueAsync(NewMessage())).Id;
        Assert.Equal(running, (await FetchOneAsync()).Message.Id);
        var queued = (await EnqueueAsync(NewMessage())).Id;

        var deleted = await Store.DeleteAsync([.. dead, succeeded, queued, running], TaskState.Dead, Timeout);

        Assert.Equal(2, deleted);
        Assert.Null(await Store.GetAsync(dead[0], Timeout));
        Assert.Null(await Store.GetAsync(dead[1], Timeout));
        Assert.Equal(TaskState.Succeeded, await StateOf(succeeded));
        Assert.Equal(TaskState.Queued, await StateOf(queued));
        Assert.Equal(TaskState.Running, await StateOf(running));
    }

    [Fact]
    public async Task Deleted_tasks_leave_the_listings_and_the_queue_counts()
    {
        var dead = await DeadTasksAsync(3, queue: "reports");
        var kept = await DeadTasksAsync(1, queue: "reports");

        Assert.Equal(3, await Store.DeleteAsync(dead, TaskState.Dead, Timeout));

        var page = await Store.ListAsync(new TaskQuery { State = TaskState.Dead, Queue = "reports" }, Timeout);
        Assert.Equal(kept, page.Items.Select(r => r.Id));
        Assert.Equal(kept, (await Store.ListAsync(new TaskQuery { Task = "test.task" }, Timeout)).Items.Select(r => r.Id));
        var stats = Assert.Single(await Store.GetQueuesAsync(Timeout), q => q.Name == "reports");
        Assert.Equal(1, stats.Count(TaskState.Dead));
    }

    [Fact]
    public async Task Delete_frees_the_idempotency_key_of_a_deleted_task()
    {
        var message = NewMessage() with { IdempotencyKey = "report-7", MaxAttempts = 1 };
        await EnqueueAsync(message);
        await DeadAsync(await FetchOneAsync());

        Assert.Equal(1, await Store.DeleteAsync([message.Id], TaskState.Dead, Timeout));

        var again = await EnqueueAsync(NewMessage() with { IdempotencyKey = "report-7" });
        Assert.True(again.Created);
        Assert.NotEqual(message.Id, again.Id);
    }

    [Fact]
    public async Task Delete_of_unknown_ids_or_of_none_deletes_nothing()
    {
        var dead = await DeadTasksAsync(1);

        Assert.Equal(0, await Store.DeleteAsync([Guid.CreateVersion7(), Guid.CreateVersion7()], TaskState.Dead, Timeout));
        Assert.Equal(0, await Store.DeleteAsync([], TaskState.Dead, Timeout));
        Assert.Equal(TaskState.Dead, await StateOf(dead[0]));
    }

    [Theory]
    [InlineData(TaskState.Queued)]
    [InlineData(TaskState.Running)]
    [InlineData(TaskState.Retrying)]
    [InlineData(TaskState.Scheduled)]
    public async Task Delete_with_a_state_that_is_not_terminal_throws(TaskState state)
    {
        var queued = (await EnqueueAsync(NewMessage())).Id;

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.DeleteAsync([queued], state, Timeout));
        Assert.Equal(TaskState.Queued, await StateOf(queued));
    }

    [Fact]
    public async Task Bulk_purge_deletes_every_match_page_by_page_and_leaves_the_rest()
    {
        var reports = await DeadTasksAsync(7, queue: "reports");
        var mail = await DeadTasksAsync(2, queue: "mail");
        var cancelled = (await EnqueueAsync(NewMessage("reports"))).Id;
        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(cancelled, Timeout));

        // A batch of 3 makes three steps of the seven matches.
        var purged = await BulkTaskOperations.PurgeAsync(Backend, new TaskFilter { Queue = "reports" }, batchSize: 3, Timeout);

        Assert.Equal(7, purged);
        foreach (var id in reports)
        {
            Assert.Null(await Store.GetAsync(id, Timeout));
        }
        Assert.All(await Task.WhenAll(mail.Select(StateOf)), s => Assert.Equal(TaskState.Dead, s));
        Assert.Equal(TaskState.Cancelled, await StateOf(cancelled));
    }

    [Fact]
    public async Task Bulk_retry_requeues_every_match_with_fresh_attempts_and_leaves_the_rest()
    {
        var scores = await DeadTasksAsync(5, task: "flights.score");
        var other = await DeadTasksAsync(2, task: "flights.other");
        var retried = new List<Guid>();

        var count = await BulkTaskOperations.RetryAsync(Backend, new TaskFilter { Task = "flights.score" }, batchSize: 2,
            r => retried.Add(r.Id), Timeout);

        Assert.Equal(5, count);
        Assert.Equal(scores.Order(), retried.Order());
        foreach (var id in scores)
        {
            var record = await GetAsync(id);
            Assert.Equal(TaskState.Queued, record.State);
            Assert.Equal(0, record.Attempts);
        }
        Assert.All(await Task.WhenAll(other.Select(StateOf)), s => Assert.Equal(TaskState.Dead, s));
        var leases = await FetchAsync(10);
        Assert.Equal(scores.Order(), leases.Select(l => l.Message.Id).Order());
        Assert.All(leases, l => Assert.Equal(1, l.Attempt));
    }

    [Fact]
    public async Task Bulk_operations_match_the_finish_time_window()
    {
        var early = await DeadTasksAsync(2);
        Advance(TimeSpan.FromMinutes(10));
        var from = Now;
        var middle = await DeadTasksAsync(3);
        Advance(TimeSpan.FromMinutes(10));
        var to = Now;
        var late = await DeadTasksAsync(2);

        var count = await BulkTaskOperations.RetryAsync(Backend, new TaskFilter { FinishedAfter = from, FinishedBefore = to }, batchSize: 2, null, Timeout);

        Assert.Equal(3, count);
        Assert.All(await Task.WhenAll(middle.Select(StateOf)), s => Assert.Equal(TaskState.Queued, s));
        Assert.All(await Task.WhenAll(early.Concat(late).Select(StateOf)), s => Assert.Equal(TaskState.Dead, s));
        Assert.Equal(2, await BulkTaskOperations.PurgeAsync(Backend, new TaskFilter { FinishedBefore = from }, batchSize: 500, Timeout));
        Assert.All(await Task.WhenAll(late.Select(StateOf)), s => Assert.Equal(TaskState.Dead, s));
    }

    [Fact]
    public async Task Bulk_operations_act_on_at_most_the_limit_newest_first()
    {
        var dead = await DeadTasksAsync(6);

        Assert.Equal(4, await BulkTaskOperations.PurgeAsync(Backend, new TaskFilter { Limit = 4 }, batchSize: 3, Timeout));

        // The list is newest first: the two oldest are left.
        var left = (await Store.ListAsync(new TaskQuery { State = TaskState.Dead }, Timeout)).Items.Select(r => r.Id).Order();
        Assert.Equal(dead.Take(2).Order(), left);
    }

    [Fact]
    public async Task Bulk_purge_of_succeeded_tasks_and_bulk_retry_of_cancelled_ones()
    {
        var succeeded = await FinishedTaskAsync(CompletionKind.Succeeded);
        var cancelled = (await EnqueueAsync(NewMessage())).Id;
        await Queue.CancelAsync(cancelled, Timeout);
        var dead = await DeadTasksAsync(1);

        Assert.Equal(1, await BulkTaskOperations.PurgeAsync(Backend, new TaskFilter { State = TaskState.Succeeded }, 500, Timeout));
        Assert.Equal(1, await BulkTaskOperations.RetryAsync(Backend, new TaskFilter { State = TaskState.Cancelled }, 500, null, Timeout));

        Assert.Null(await Store.GetAsync(succeeded, Timeout));
        Assert.Equal(TaskState.Queued, await StateOf(cancelled));
        Assert.Equal(TaskState.Dead, await StateOf(dead[0]));
    }

    [Fact]
    public async Task Bulk_retry_of_succeeded_tasks_is_refused_naming_the_state()
    {
        var succeeded = await FinishedTaskAsync(CompletionKind.Succeeded);

        var error = await Assert.ThrowsAsync<TaskValidationException>(() =>
            BulkTaskOperations.RetryAsync(Backend, new TaskFilter { State = TaskState.Succeeded }, 500, null, Timeout));

        Assert.Equal("state", Assert.Single(error.Errors).Field);
        Assert.Equal(TaskState.Succeeded, await StateOf(succeeded));
    }

    /// <summary>Enqueues <paramref name="count"/> tasks and makes them dead, one after the other; returns their ids in
    /// enqueue order.</summary>
    private async Task<List<Guid>> DeadTasksAsync(int count, string queue = QueueNames.Default, string task = "test.task")
    {
        var ids = new List<Guid>();
        for (var i = 0; i < count; i++)
        {
            var message = NewMessage(queue, task: task);
            await EnqueueAsync(message);
            var lease = Assert.Single(await FetchAsync(1, queue));
            Assert.Equal(message.Id, lease.Message.Id);
            await DeadAsync(lease);
            ids.Add(message.Id);
        }
        return ids;
    }

    private async Task<Guid> FinishedTaskAsync(CompletionKind kind)
    {
        var message = NewMessage();
        await EnqueueAsync(message);
        var lease = await FetchOneAsync();
        await Queue.CompleteAsync([Completion(lease, kind)], Timeout);
        return message.Id;
    }
}
