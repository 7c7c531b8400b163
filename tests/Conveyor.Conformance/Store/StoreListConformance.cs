namespace Conveyor.Conformance;

/// <summary>Store role: listing tasks with filters and cursor paging.</summary>
public abstract class StoreListConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task List_returns_tasks_newest_first()
    {
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await EnqueueAsync(NewMessage())).Id);
            Advance(TimeSpan.FromMilliseconds(1));
        }

        var page = await Store.ListAsync(new TaskQuery(), Timeout);

        Assert.Equal(Enumerable.Reverse(ids), page.Items.Select(t => t.Id));
        Assert.Null(page.NextCursor);
    }

    [Fact]
    public async Task List_of_an_empty_store_returns_an_empty_last_page()
    {
        var page = await Store.ListAsync(new TaskQuery(), Timeout);

        Assert.Empty(page.Items);
        Assert.Null(page.NextCursor);
    }

    [Fact]
    public async Task List_filters_by_state()
    {
        await EnqueueManyAsync(4);
        var leases = await FetchAsync(2);
        await SucceedAsync(leases[0]);

        var running = await Store.ListAsync(new TaskQuery { State = TaskState.Running }, Timeout);
        var queued = await Store.ListAsync(new TaskQuery { State = TaskState.Queued }, Timeout);
        var succeeded = await Store.ListAsync(new TaskQuery { State = TaskState.Succeeded }, Timeout);
        var dead = await Store.ListAsync(new TaskQuery { State = TaskState.Dead }, Timeout);

        Assert.Equal(leases[1].Message.Id, Assert.Single(running.Items).Id);
        Assert.Equal(2, queued.Items.Count);
        Assert.All(queued.Items, t => Assert.Equal(TaskState.Queued, t.State));
        Assert.Equal(leases[0].Message.Id, Assert.Single(succeeded.Items).Id);
        Assert.Empty(dead.Items);
    }

    [Fact]
    public async Task List_of_running_tasks_pages_newest_first_within_a_queue()
    {
        var a = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            a.Add((await EnqueueAsync(NewMessage("a"))).Id);
            await EnqueueAsync(NewMessage("b"));
        }
        await FetchAsync(100, "a", "b");

        var first = await Store.ListAsync(new TaskQuery { State = TaskState.Running, Queue = "a", Limit = 3 }, Timeout);
        var second = await Store.ListAsync(new TaskQuery { State = TaskState.Running, Queue = "a", Limit = 3, Cursor = first.NextCursor }, Timeout);
        var stats = await Store.GetQueuesAsync(Timeout);

        Assert.Equal(Enumerable.Reverse(a).Take(3), first.Items.Select(t => t.Id));
        Assert.NotNull(first.NextCursor);
        Assert.Equal(Enumerable.Reverse(a).Skip(3), second.Items.Select(t => t.Id));
        Assert.Null(second.NextCursor);
        Assert.Equal(5, stats.Single(q => q.Name == "a").Count(TaskState.Running));
        Assert.Equal(5, stats.Single(q => q.Name == "b").Count(TaskState.Running));
    }

    [Fact]
    public async Task List_of_queued_tasks_pages_newest_first_across_queues_and_priorities()
    {
        // Fetch order (priority first) is not listing order (newest first): a backend whose ready structure is
        // ordered for fetching must still list by creation.
        int[] priorities = [0, 7, -3, 100, -100, 7, 0, 1, 0, -3, 7, 2, 0, 100];
        var all = new List<Guid>();
        var inA = new List<Guid>();
        for (var i = 0; i < priorities.Length; i++)
        {
            var queue = i % 2 == 0 ? "a" : "b";
            var id = (await EnqueueAsync(NewMessage(queue, priorities[i]))).Id;
            all.Add(id);
            if (queue == "a")
            {
                inA.Add(id);
            }
            Advance(TimeSpan.FromMilliseconds(1));
        }

        var pages = new List<IReadOnlyList<Guid>>();
        string? cursor = null;
        do
        {
            var page = await Store.ListAsync(new TaskQuery { State = TaskState.Queued, Limit = 3, Cursor = cursor }, Timeout);
            pages.Add(page.Items.Select(t => t.Id).ToList());
            cursor = page.NextCursor;
        }
        while (cursor is not null && pages.Count < 10);
        var onlyA = await Store.ListAsync(new TaskQuery { State = TaskState.Queued, Queue = "a" }, Timeout);

        Assert.Equal([3, 3, 3, 3, 2], pages.Select(p => p.Count));
        Assert.Equal(Enumerable.Reverse(all), pages.SelectMany(p => p));
        Assert.Equal(Enumerable.Reverse(inA), onlyA.Items.Select(t => t.Id));
    }

    [Fact]
    public async Task List_of_a_finished_state_pages_newest_first_across_queues()
    {
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await EnqueueAsync(NewMessage(i % 2 == 0 ? "a" : "b"))).Id);
            Advance(TimeSpan.FromMilliseconds(1));
        }
        foreach (var lease in await FetchAsync(100, "a", "b"))
        {
            await SucceedAsync(lease);
        }

        var first = await Store.ListAsync(new TaskQuery { State = TaskState.Succeeded, Limit = 2 }, Timeout);
        var second = await Store.ListAsync(new TaskQuery { State = TaskState.Succeeded, Limit = 2, Cursor = first.NextCursor }, Timeout);
        var third = await Store.ListAsync(new TaskQuery { State = TaskState.Succeeded, Limit = 2, Cursor = second.NextCursor }, Timeout);

        Assert.Equal(Enumerable.Reverse(ids), first.Items.Concat(second.Items).Concat(third.Items).Select(t => t.Id));
        Assert.Null(third.NextCursor);
    }

    [Fact]
    public async Task List_without_a_state_pages_newest_first_over_every_state()
    {
        // Scheduled, queued, running, succeeded and dead tasks in two queues, created in this order.
        var ids = new List<Guid>();
        for (var i = 0; i < 10; i++)
        {
            var message = NewMessage(i % 2 == 0 ? "a" : "b") with { NotBefore = i == 3 ? Now.AddHours(1) : null };
            ids.Add((await EnqueueAsync(message)).Id);
            Advance(TimeSpan.FromMilliseconds(1));
        }
        var leases = await FetchAsync(6, "a", "b");
        await SucceedAsync(leases[0]);
        await Queue.CompleteAsync([Completion(leases[1], CompletionKind.Dead)], Timeout);

        var pages = new List<IReadOnlyList<TaskRecord>>();
        string? cursor = null;
        do
        {
            var page = await Store.ListAsync(new TaskQuery { Limit = 3, Cursor = cursor }, Timeout);
            pages.Add(page.Items);
            cursor = page.NextCursor;
        }
        while (cursor is not null && pages.Count < 10);
        var inB = await Store.ListAsync(new TaskQuery { Queue = "b" }, Timeout);

        Assert.Equal(Enumerable.Reverse(ids), pages.SelectMany(p => p).Select(t => t.Id));
        Assert.Equal([TaskState.Scheduled, TaskState.Queued, TaskState.Running, TaskState.Succeeded, TaskState.Dead],
            pages.SelectMany(p => p).Select(t => t.State).Distinct().Order());
        Assert.Equal(ids.Where((_, i) => i % 2 == 1).Reverse(), inB.Items.Select(t => t.Id));
    }

    [Fact]
    public async Task List_without_a_state_sees_every_task_while_workers_change_their_states()
    {
        var ids = (await EnqueueManyAsync(1_000)).ToHashSet();
        using var stop = new CancellationTokenSource();
        // The drain waits after its first batch for the first listing, so that one is made while states change even when
        // the drain would otherwise end first (the in-memory backend drains 1,000 tasks in a few milliseconds).
        var listed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var drain = Task.Run(async () =>
        {
            var first = true;
            while (!stop.IsCancellationRequested)
            {
                var leases = await Queue.FetchAsync(Request(20), Timeout);
                if (leases.Count == 0)
                {
                    return;
                }
                await Queue.CompleteAsync([.. leases.Select(l => Completion(l, CompletionKind.Succeeded))], Timeout);
                if (first)
                {
                    first = false;
                    await listed.Task.WaitAsync(Timeout);
                }
            }
        });

        var listings = 0;
        try
        {
            while (!drain.IsCompleted && listings < 20)
            {
                var page = await Store.ListAsync(new TaskQuery { Limit = 1_000 }, Timeout);
                Assert.True(ids.SetEquals(page.Items.Select(t => t.Id)), $"listing {listings} saw {page.Items.Count} of 1,000 tasks");
                listings++;
                listed.TrySetResult();
            }
        }
        finally
        {
            listed.TrySetResult();
            await stop.CancelAsync();
            await drain;
        }
    }

    [Fact]
    public async Task List_filters_by_task_name()
    {
        var score = NewMessage(task: "flights.score");
        await Queue.EnqueueAsync([NewMessage(task: "flights.fetch"), score, NewMessage(task: "flights.scores")], Timeout);

        var page = await Store.ListAsync(new TaskQuery { Task = "flights.score" }, Timeout);

        Assert.Equal(score.Id, Assert.Single(page.Items).Id);
    }

    [Fact]
    public async Task List_filters_by_queue()
    {
        await EnqueueManyAsync(2, "a");
        var b = await EnqueueManyAsync(3, "b");

        var page = await Store.ListAsync(new TaskQuery { Queue = "b" }, Timeout);

        Assert.Equal(b.ToHashSet(), page.Items.Select(t => t.Id).ToHashSet());
        Assert.All(page.Items, t => Assert.Equal("b", t.Queue));
    }

    [Fact]
    public async Task List_combines_filters()
    {
        var wanted = NewMessage("a", task: "x");
        await Queue.EnqueueAsync([wanted, NewMessage("a", task: "y"), NewMessage("b", task: "x")], Timeout);
        await EnqueueAsync(NewMessage("a", task: "x") with { NotBefore = Now.AddMinutes(1) });

        var page = await Store.ListAsync(new TaskQuery { Queue = "a", Task = "x", State = TaskState.Queued }, Timeout);

        Assert.Equal(wanted.Id, Assert.Single(page.Items).Id);
    }

    [Fact]
    public async Task List_pages_cover_every_task_exactly_once()
    {
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.AddRange(await EnqueueManyAsync(5));
            Advance(TimeSpan.FromMilliseconds(1));
        }

        var seen = new List<Guid>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await Store.ListAsync(new TaskQuery { Limit = 7, Cursor = cursor }, Timeout);
            Assert.InRange(page.Items.Count, 1, 7);
            seen.AddRange(page.Items.Select(t => t.Id));
            cursor = page.NextCursor;
            pages++;
        }
        while (cursor is not null && pages < 100);

        Assert.Equal(4, pages);
        Assert.Equal(ids.Count, seen.Count);
        Assert.Equal(ids.ToHashSet(), seen.ToHashSet());
    }

    [Fact]
    public async Task List_pages_with_a_filter_cover_every_matching_task_exactly_once()
    {
        var matching = new HashSet<Guid>();
        for (var i = 0; i < 4; i++)
        {
            matching.UnionWith(await EnqueueManyAsync(3, "a"));
            await EnqueueManyAsync(3, "b");
            Advance(TimeSpan.FromMilliseconds(1));
        }

        var seen = new List<Guid>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await Store.ListAsync(new TaskQuery { Queue = "a", Limit = 5, Cursor = cursor }, Timeout);
            seen.AddRange(page.Items.Select(t => t.Id));
            cursor = page.NextCursor;
            pages++;
        }
        while (cursor is not null && pages < 100);

        Assert.Equal(3, pages);
        Assert.Equal(matching.Count, seen.Count);
        Assert.True(matching.SetEquals(seen));
    }

    [Fact]
    public async Task List_page_that_ends_exactly_at_the_last_task_has_no_next_cursor()
    {
        await EnqueueManyAsync(6);

        var first = await Store.ListAsync(new TaskQuery { Limit = 3 }, Timeout);
        var second = await Store.ListAsync(new TaskQuery { Limit = 3, Cursor = first.NextCursor }, Timeout);

        Assert.NotNull(first.NextCursor);
        Assert.Equal(3, second.Items.Count);
        Assert.Null(second.NextCursor);
    }

    [Fact]
    public async Task List_cursor_is_stable_when_tasks_are_added_meanwhile()
    {
        var ids = await EnqueueManyAsync(6);
        var first = await Store.ListAsync(new TaskQuery { Limit = 3 }, Timeout);
        Advance(TimeSpan.FromMilliseconds(1));
        var added = await EnqueueManyAsync(2);

        var second = await Store.ListAsync(new TaskQuery { Limit = 3, Cursor = first.NextCursor }, Timeout);

        var seen = first.Items.Concat(second.Items).Select(t => t.Id).ToList();
        Assert.Equal(6, seen.Count);
        Assert.True(ids.ToHashSet().SetEquals(seen));
        Assert.Empty(added.Intersect(seen));
    }

    [Fact]
    public async Task List_with_a_cursor_it_did_not_issue_throws_ArgumentException()
    {
        await EnqueueManyAsync(2);

        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.ListAsync(new TaskQuery { Cursor = "not a cursor!" }, Timeout));
    }

    [Fact]
    public async Task List_items_carry_their_history()
    {
        await EnqueueAsync(NewMessage());
        await SucceedAsync(await FetchOneAsync());

        var item = Assert.Single((await Store.ListAsync(new TaskQuery(), Timeout)).Items);

        Assert.Equal([TaskState.Queued, TaskState.Running, TaskState.Succeeded], item.Transitions.Select(t => t.State));
    }
}
