using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Conformance;

/// <summary>Unique tasks: the claims of the coordination role (<see cref="IUniqueKeyStore"/>), and enqueues through
/// <see cref="ITaskClient"/> that return the live task holding a key instead of storing another.</summary>
public abstract class UniqueKeyConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IUniqueKeyStore Keys => Backend.UniqueKeys;

    private UniqueClaim Claim(string key, Guid task, TimeSpan? window = null) => new(key, task, Now, window ?? TimeSpan.Zero);

    [Fact]
    public async Task A_claim_is_stored_once_and_read_back_whole()
    {
        var first = Guid.NewGuid();
        Assert.Null(await Keys.GetUniqueClaimAsync("k", Timeout));

        Assert.True(await Keys.TryClaimUniqueKeyAsync(Claim("k", first, TimeSpan.FromMinutes(5)), replacing: null, Timeout));
        Assert.False(await Keys.TryClaimUniqueKeyAsync(Claim("k", Guid.NewGuid()), replacing: null, Timeout));

        Assert.Equal(Claim("k", first, TimeSpan.FromMinutes(5)), await Keys.GetUniqueClaimAsync("k", Timeout));
    }

    [Fact]
    public async Task A_claim_is_replaced_only_from_the_task_that_holds_it_and_released_only_by_it()
    {
        var first = Guid.NewGuid();
        var second = Guid.NewGuid();
        await Keys.TryClaimUniqueKeyAsync(Claim("k", first), null, Timeout);

        Assert.False(await Keys.TryClaimUniqueKeyAsync(Claim("k", second), replacing: Guid.NewGuid(), Timeout));
        Assert.False(await Keys.TryClaimUniqueKeyAsync(Claim("missing", second), replacing: first, Timeout));
        Assert.True(await Keys.TryClaimUniqueKeyAsync(Claim("k", second), replacing: first, Timeout));
        await Keys.ReleaseUniqueKeyAsync("k", first, Timeout);
        Assert.Equal(second, (await Keys.GetUniqueClaimAsync("k", Timeout))!.TaskId);

        await Keys.ReleaseUniqueKeyAsync("k", second, Timeout);
        Assert.Null(await Keys.GetUniqueClaimAsync("k", Timeout));
        Assert.Null(await Keys.GetUniqueClaimAsync("missing", Timeout));
    }

    [Fact]
    public async Task Concurrent_claims_of_one_key_from_two_instances_let_exactly_one_win()
    {
        var peer = await NewPeerAsync();
        for (var round = 0; round < 20; round++)
        {
            var key = "race-" + round;
            var results = await Task.WhenAll(
                Keys.TryClaimUniqueKeyAsync(Claim(key, Guid.NewGuid()), null, Timeout),
                peer.UniqueKeys.TryClaimUniqueKeyAsync(Claim(key, Guid.NewGuid()), null, Timeout));

            Assert.Equal(1, results.Count(won => won));
        }
    }

    [Fact]
    public async Task An_enqueue_with_the_key_of_a_waiting_or_running_task_returns_that_task()
    {
        var client = Client();
        var options = new EnqueueOptions { UniqueKey = "report:tenant-42" };
        var first = await client.EnqueueAsync("report", options, Timeout);

        var again = await client.EnqueueAsync("report", options, Timeout);
        Assert.True(first.Created);
        Assert.False(again.Created);
        Assert.True(again.MatchedUniqueKey);
        Assert.Equal(first.Id, again.Id);
        Assert.Equal(TaskState.Queued, again.State);

        await FetchStartedAsync();
        var whileRunning = await client.EnqueueAsync("report", options, Timeout);
        Assert.Equal(first.Id, whileRunning.Id);
        Assert.Equal(TaskState.Running, whileRunning.State);
        Assert.Single((await Store.ListAsync(new TaskQuery(), Timeout)).Items);
    }

    [Fact]
    public async Task Once_the_task_finishes_the_key_is_free_and_a_new_task_is_created()
    {
        var client = Client();
        var options = new EnqueueOptions { UniqueKey = "k" };
        var first = await client.EnqueueAsync("report", options, Timeout);
        var lease = await FetchStartedAsync();
        await Queue.CompleteAsync([new Completion { Lease = lease.Ref, Kind = CompletionKind.Succeeded, Attempt = lease.Attempt, At = Now }], Timeout);

        var next = await client.EnqueueAsync("report", options, Timeout);

        Assert.True(next.Created);
        Assert.NotEqual(first.Id, next.Id);
        Assert.Equal(next.Id, (await Keys.GetUniqueClaimAsync("k", Timeout))!.TaskId);
    }

    [Fact]
    public async Task With_a_window_the_key_stays_held_that_long_after_the_task_finishes()
    {
        var client = Client();
        var options = new EnqueueOptions { UniqueKey = "k", UniqueFor = TimeSpan.FromMinutes(10) };
        var first = await client.EnqueueAsync("report", options, Timeout);
        var lease = await FetchStartedAsync();
        await Queue.CompleteAsync([new Completion { Lease = lease.Ref, Kind = CompletionKind.Succeeded, Attempt = lease.Attempt, At = Now }], Timeout);

        Advance(TimeSpan.FromMinutes(9));
        var within = await client.EnqueueAsync("report", options, Timeout);
        Advance(TimeSpan.FromMinutes(2));
        var after = await client.EnqueueAsync("report", options, Timeout);

        Assert.Equal(first.Id, within.Id);
        Assert.Equal(TaskState.Succeeded, within.State);
        Assert.True(within.MatchedUniqueKey);
        Assert.True(after.Created);
    }

    [Fact]
    public async Task In_one_batch_a_second_message_with_a_key_returns_the_first_and_other_keys_are_stored()
    {
        var client = Client();
        var results = await client.EnqueueManyAsync(
        [
            new TaskRequest("report", null, new EnqueueOptions { UniqueKey = "a" }),
            new TaskRequest("report", null, new EnqueueOptions { UniqueKey = "a" }),
            new TaskRequest("report", null, new EnqueueOptions { UniqueKey = "b" }),
            new TaskRequest("report"),
        ], Timeout);

        Assert.True(results[0].Created);
        Assert.Equal(results[0].Id, results[1].Id);
        Assert.True(results[1].MatchedUniqueKey);
        Assert.True(results[2].Created);
        Assert.True(results[3].Created);
        Assert.Equal(3, (await Store.ListAsync(new TaskQuery(), Timeout)).Items.Count);
    }

    [Fact]
    public async Task A_claim_whose_task_was_never_stored_holds_only_briefly()
    {
        var client = Client();
        var ghost = Guid.NewGuid();
        await Keys.TryClaimUniqueKeyAsync(Claim("k", ghost), null, Timeout);

        var soon = await client.EnqueueAsync("report", new EnqueueOptions { UniqueKey = "k" }, Timeout);
        Advance(UniqueKeys.PendingClaim);
        var later = await client.EnqueueAsync("report", new EnqueueOptions { UniqueKey = "k" }, Timeout);

        Assert.Equal(ghost, soon.Id);
        Assert.True(soon.MatchedUniqueKey);
        Assert.True(later.Created);
    }

    [Fact]
    public async Task An_idempotency_key_match_leaves_the_unique_key_claimed_by_the_existing_task()
    {
        var client = Client();
        var first = await client.EnqueueAsync("report", new EnqueueOptions { IdempotencyKey = "once" }, Timeout);

        var again = await client.EnqueueAsync("report", new EnqueueOptions { IdempotencyKey = "once", UniqueKey = "u" }, Timeout);

        Assert.Equal(first.Id, again.Id);
        Assert.False(again.MatchedUniqueKey);
        Assert.Equal(first.Id, (await Keys.GetUniqueClaimAsync("u", Timeout))!.TaskId);
    }

    [Fact]
    public async Task Claims_are_listed_page_by_page_each_one_at_least_once()
    {
        var tasks = Enumerable.Range(0, 23).ToDictionary(i => $"key-{i:D2}", _ => Guid.NewGuid());
        foreach (var (key, task) in tasks)
        {
            await Keys.TryClaimUniqueKeyAsync(Claim(key, task), null, Timeout);
        }

        var listed = new Dictionary<string, Guid>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await Keys.ListUniqueClaimsAsync(cursor, 5, Timeout);
            foreach (var claim in page.Claims)
            {
                listed[claim.Key] = claim.TaskId;
            }
            cursor = page.NextCursor;
            Assert.True(++pages <= 50, "the listing did not end");
        }
        while (cursor is not null);

        Assert.Equal(tasks.OrderBy(t => t.Key), listed.OrderBy(t => t.Key));
    }

    [Fact]
    public async Task The_sweep_removes_only_claims_that_no_longer_hold()
    {
        var client = Client();
        var done = await client.EnqueueAsync("report", new EnqueueOptions { UniqueKey = "done" }, Timeout);
        var lease = await FetchStartedAsync();
        Assert.Equal(done.Id, lease.Message.Id);
        await Queue.CompleteAsync([new Completion { Lease = lease.Ref, Kind = CompletionKind.Succeeded, Attempt = lease.Attempt, At = Now }], Timeout);
        var windowed = await client.EnqueueAsync("report", new EnqueueOptions { UniqueKey = "windowed", UniqueFor = TimeSpan.FromHours(1) }, Timeout);
        var windowedLease = await FetchStartedAsync();
        await Queue.CompleteAsync([new Completion { Lease = windowedLease.Ref, Kind = CompletionKind.Succeeded, Attempt = windowedLease.Attempt, At = Now }], Timeout);
        var waiting = await client.EnqueueAsync("report", new EnqueueOptions { UniqueKey = "waiting" }, Timeout);
        await Keys.TryClaimUniqueKeyAsync(Claim("ghost", Guid.NewGuid()), null, Timeout);
        Advance(UniqueKeys.PendingClaim);
        await Keys.TryClaimUniqueKeyAsync(Claim("on-its-way", Guid.NewGuid()), null, Timeout);

        var removed = await UniqueKeys.SweepAsync(Backend, Time, 2, Timeout);

        Assert.Equal(2, removed);
        Assert.Null(await Keys.GetUniqueClaimAsync("done", Timeout));
        Assert.Null(await Keys.GetUniqueClaimAsync("ghost", Timeout));
        Assert.Equal(windowed.Id, (await Keys.GetUniqueClaimAsync("windowed", Timeout))!.TaskId);
        Assert.Equal(waiting.Id, (await Keys.GetUniqueClaimAsync("waiting", Timeout))!.TaskId);
        Assert.NotNull(await Keys.GetUniqueClaimAsync("on-its-way", Timeout));
    }

    private ITaskClient Client()
    {
        var services = new ServiceCollection();
        services.AddSingleton(Time);
        services.AddConveyorClient().UseBackend(_ => Backend);
        return services.BuildServiceProvider().GetRequiredService<ITaskClient>();
    }
}
