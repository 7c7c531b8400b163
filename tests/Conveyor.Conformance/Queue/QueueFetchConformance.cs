namespace Conveyor.Conformance;

/// <summary>Queue role: what a fetch returns, in which order, from which queues; pause and resume.</summary>
public abstract class QueueFetchConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Fetch_from_an_empty_queue_returns_nothing_at_once()
    {
        var leases = await FetchAsync();

        Assert.Empty(leases);
    }

    [Fact]
    public async Task Fetch_leases_the_message_for_the_worker()
    {
        var message = NewMessage();
        await EnqueueAsync(message);

        var lease = await FetchOneAsync();

        Assert.Equal(message.Id, lease.Message.Id);
        Assert.Equal(1, lease.Attempt);
        Assert.False(lease.IsRedelivery);
        Assert.Equal(Now + LeaseDuration, lease.ExpiresAt);
        var record = await GetAsync(message.Id);
        Assert.Equal(TaskState.Running, record.State);
        Assert.Equal(WorkerId, record.WorkerId);
        Assert.Equal(1, record.Attempts);
        Assert.Equal(Now, record.StartedAt);
    }

    [Fact]
    public async Task Fetched_message_is_not_fetched_again_while_leased()
    {
        await EnqueueAsync(NewMessage());
        await FetchOneAsync();

        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Fetch_returns_at_most_MaxCount_messages()
    {
        await EnqueueManyAsync(10);

        var first = await FetchAsync(max: 4);
        var second = await FetchAsync(max: 100);

        Assert.Equal(4, first.Count);
        Assert.Equal(6, second.Count);
        Assert.Empty(first.Select(l => l.Message.Id).Intersect(second.Select(l => l.Message.Id)));
    }

    [Fact]
    public async Task Fetch_returns_higher_priority_first()
    {
        var low = NewMessage(priority: -3);
        var normal = NewMessage(priority: 0);
        var high = NewMessage(priority: 5);
        var highest = NewMessage(priority: Priorities.Max);
        await Queue.EnqueueAsync([low, normal, high], Timeout);
        await EnqueueAsync(highest);

        var leases = await FetchAsync();

        Assert.Equal([highest.Id, high.Id, normal.Id, low.Id], leases.Select(l => l.Message.Id));
    }

    [Fact]
    public async Task Fetch_one_at_a_time_returns_higher_priority_first()
    {
        var low = NewMessage(priority: Priorities.Min);
        var high = NewMessage(priority: 1);
        await Queue.EnqueueAsync([low, high], Timeout);

        Assert.Equal(high.Id, (await FetchOneAsync()).Message.Id);
        Assert.Equal(low.Id, (await FetchOneAsync()).Message.Id);
    }

    [Fact]
    public async Task Fetch_returns_messages_of_one_priority_in_enqueue_order()
    {
        var ids = await EnqueueManyAsync(20);
        for (var i = 0; i < 20; i++)
        {
            ids.Add((await EnqueueAsync(NewMessage())).Id);
        }

        var fetched = new List<Guid>();
        for (var page = 0; page < 8; page++)
        {
            fetched.AddRange((await FetchAsync(max: 5)).Select(l => l.Message.Id));
        }

        Assert.Equal(ids, fetched);
    }

    [Fact]
    public async Task Fetch_keeps_enqueue_order_within_each_priority()
    {
        var messages = new[]
        {
            NewMessage(priority: 1), NewMessage(priority: 2), NewMessage(priority: 1),
            NewMessage(priority: 2), NewMessage(priority: 1),
        };
        await Queue.EnqueueAsync(messages, Timeout);

        var leases = await FetchAsync();

        Assert.Equal([messages[1].Id, messages[3].Id, messages[0].Id, messages[2].Id, messages[4].Id], leases.Select(l => l.Message.Id));
    }

    [Fact]
    public async Task Fetch_takes_only_from_the_queues_asked_for()
    {
        var wanted = NewMessage("a");
        await Queue.EnqueueAsync([NewMessage("b"), wanted, NewMessage(QueueNames.Default)], Timeout);

        var leases = await FetchAsync(100, "a");

        Assert.Equal(wanted.Id, Assert.Single(leases).Message.Id);
    }

    [Fact]
    public async Task Fetch_in_strict_order_drains_earlier_queues_first()
    {
        await EnqueueManyAsync(3, "low", priority: Priorities.Max);
        var urgent = await EnqueueManyAsync(3, "urgent");

        var leases = await Queue.FetchAsync(Request(4, "urgent", "low"), Timeout);

        Assert.Equal(urgent, leases.Take(3).Select(l => l.Message.Id));
        Assert.Equal("low", leases[3].Message.Queue);
    }

    [Fact]
    public async Task Fetch_in_strict_order_one_at_a_time_always_takes_the_first_queue_with_work()
    {
        await EnqueueManyAsync(20, "b");
        await EnqueueManyAsync(20, "a");

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("a", (await Queue.FetchAsync(Request(1, "a", "b"), Timeout)).Single().Message.Queue);
        }
        Assert.Equal("b", (await Queue.FetchAsync(Request(1, "a", "b"), Timeout)).Single().Message.Queue);
    }

    [Fact]
    public async Task Fetch_by_weight_serves_every_queue_in_proportion()
    {
        // 200 fetches of one message from queues weighted 3:1 with work in both: the heavy queue
        // gets about 150. The bounds are many standard deviations wide (σ ≈ 6), so this never flakes.
        await EnqueueManyAsync(200, "heavy");
        await EnqueueManyAsync(200, "light");
        var request = Request(1) with { Queues = [new QueueWeight("light", 1), new QueueWeight("heavy", 3)], StrictOrder = false };

        var counts = new Dictionary<string, int> { ["heavy"] = 0, ["light"] = 0 };
        for (var i = 0; i < 200; i++)
        {
            counts[(await Queue.FetchAsync(request, Timeout)).Single().Message.Queue]++;
        }

        Assert.InRange(counts["light"], 10, 90);
        Assert.InRange(counts["heavy"], 110, 190);
    }

    [Fact]
    public async Task Fetch_by_weight_takes_from_other_queues_when_one_is_empty()
    {
        var ids = await EnqueueManyAsync(5, "light");
        var request = Request(10) with { Queues = [new QueueWeight("heavy", 100), new QueueWeight("light", 1)], StrictOrder = false };

        var leases = await Queue.FetchAsync(request, Timeout);

        Assert.Equal(ids, leases.Select(l => l.Message.Id));
    }

    [Fact]
    public async Task Paused_queue_is_not_fetched_but_still_accepts_enqueues()
    {
        await Queue.PauseQueueAsync("a", Timeout);

        var result = await EnqueueAsync(NewMessage("a"));

        Assert.True(result.Created);
        Assert.Equal(TaskState.Queued, result.State);
        Assert.Empty(await FetchAsync(100, "a"));
    }

    [Fact]
    public async Task Pausing_one_queue_leaves_the_others_fetchable()
    {
        await EnqueueAsync(NewMessage("a"));
        var other = NewMessage("b");
        await EnqueueAsync(other);
        await Queue.PauseQueueAsync("a", Timeout);

        var leases = await FetchAsync(100, "a", "b");

        Assert.Equal(other.Id, Assert.Single(leases).Message.Id);
    }

    [Fact]
    public async Task Resumed_queue_is_fetched_again()
    {
        var message = NewMessage("a");
        await EnqueueAsync(message);
        await Queue.PauseQueueAsync("a", Timeout);
        Assert.Empty(await FetchAsync(100, "a"));

        await Queue.ResumeQueueAsync("a", Timeout);

        Assert.Equal(message.Id, (await FetchOneAsync("a")).Message.Id);
    }

    [Fact]
    public async Task Pause_and_resume_are_idempotent()
    {
        await EnqueueAsync(NewMessage("a"));
        await Queue.PauseQueueAsync("a", Timeout);
        await Queue.PauseQueueAsync("a", Timeout);
        Assert.True((await Store.GetQueuesAsync(Timeout)).Single(q => q.Name == "a").Paused);

        await Queue.ResumeQueueAsync("a", Timeout);
        await Queue.ResumeQueueAsync("a", Timeout);

        Assert.False((await Store.GetQueuesAsync(Timeout)).Single(q => q.Name == "a").Paused);
        Assert.Single(await FetchAsync(100, "a"));
    }

    [Fact]
    public async Task Pausing_a_queue_does_not_touch_messages_already_leased()
    {
        await EnqueueAsync(NewMessage("a"));
        var lease = await FetchOneAsync("a");
        await Queue.PauseQueueAsync("a", Timeout);

        await SucceedAsync(lease);

        Assert.Equal(TaskState.Succeeded, await StateOf(lease.Message.Id));
    }
}
