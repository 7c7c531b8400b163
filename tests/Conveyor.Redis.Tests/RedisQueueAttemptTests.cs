using Conveyor.Backends;

namespace Conveyor.Redis.Tests;

// Registered with the other suites in RedisConformance.cs; what only Redis has to say about ending leases is here:
// end_lease.lua keeps the indexes that the in-memory backend does not have.
public sealed partial class RedisQueueAttemptTests
{
    [Fact]
    public async Task Task_dead_by_interruptions_is_listed_counted_and_purged_as_dead()
    {
        var message = NewMessage("reports") with { MaxAttempts = 10 };
        await EnqueueAsync(message);
        for (var i = 0; i < LeaseRules.MaxInterruptions; i++)
        {
            await FetchStartedAsync("reports");
            await ExpireLeasesAsync();
        }

        Assert.Equal(message.Id, Assert.Single((await Store.ListAsync(new TaskQuery { State = TaskState.Dead }, Timeout)).Items).Id);
        var queue = Assert.Single(await Store.GetQueuesAsync(Timeout), q => q.Name == "reports");
        Assert.Equal(1, queue.Count(TaskState.Dead));
        Assert.Equal(0, queue.Count(TaskState.Queued));
        Assert.Equal(1, await Store.PurgeFinishedAsync(Now + TimeSpan.FromSeconds(1), 100, Timeout));
        Assert.Null(await Store.GetAsync(message.Id, Timeout));
    }

    [Fact]
    public async Task Abandoned_lease_whose_cancel_was_asked_is_listed_and_purged_as_cancelled()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await Queue.CancelAsync(lease.Message.Id, Timeout);

        await Queue.AbandonLeasesAsync(WorkerId, Timeout);

        Assert.Equal(lease.Message.Id, Assert.Single((await Store.ListAsync(new TaskQuery { State = TaskState.Cancelled }, Timeout)).Items).Id);
        Assert.Empty((await Store.ListAsync(new TaskQuery { State = TaskState.Running }, Timeout)).Items);
        Assert.Equal(1, await Store.PurgeFinishedAsync(Now + TimeSpan.FromSeconds(1), 100, Timeout));
    }

    [Fact]
    public async Task Release_of_an_unstarted_lease_whose_cancel_was_asked_cancels_the_task()
    {
        // A hand-back is clean only when nothing else was asked of the task: its cancel must not be lost.
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await Queue.CancelAsync(lease.Message.Id, Timeout);

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Cancelled, record.State);
        Assert.Empty(record.Errors);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Lease_that_lapsed_unstarted_records_the_round_trip_in_its_history()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();

        await ExpireLeasesAsync();

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal([TaskState.Queued, TaskState.Running, TaskState.Queued], record.Transitions.Select(t => t.State));
        Assert.Equal(Now, record.Transitions[^1].At);
    }

    [Fact]
    public async Task A_clean_hand_back_is_not_a_lapse()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        Assert.False((await FetchOneAsync()).RecordStartFirst);
    }
}
