using Conveyor.Backends;

namespace Conveyor.Postgres.Tests;

/// <summary>
/// The grouping logic alone, with inserts that the test holds open (one per loop, so every loop is busy),
/// so that which calls share a group is certain rather than a matter of timing. The conformance suite covers the same behaviours on a real server.
/// </summary>
public sealed class PostgresEnqueueGroupsTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private sealed class HeldInsert
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _allHeld = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;

        public List<List<Guid>> Inserts { get; } = [];

        public int Started => Volatile.Read(ref _calls);

        public Func<TaskMessage, bool> Fails { get; set; } = _ => false;

        /// <summary>Completes when every loop is inside a held insert.</summary>
        public Task AllHeld => _allHeld.Task;

        public void Release() => _release.TrySetResult();

        public async Task<EnqueueResult[]> InsertAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
        {
            lock (Inserts)
            {
                Inserts.Add(messages.Select(m => m.Id).ToList());
            }
            var call = Interlocked.Increment(ref _calls);
            if (call <= PostgresEnqueueGroups.MaxInFlight)
            {
                if (call == PostgresEnqueueGroups.MaxInFlight)
                {
                    _allHeld.TrySetResult();
                }
                await _release.Task.WaitAsync(Deadline, cancellationToken);
            }
            if (messages.Any(Fails))
            {
                throw new InvalidOperationException("rejected by the store");
            }
            return messages.Select(m => new EnqueueResult(m.Id, true, TaskState.Queued)).ToArray();
        }
    }

    private static TaskMessage Message() => new() { Id = Guid.NewGuid(), Task = "t", Queue = QueueNames.Default, CreatedAt = DateTimeOffset.UnixEpoch };

    [Fact]
    public async Task Calls_made_while_an_insert_is_in_flight_share_the_next_insert_and_each_gets_its_own_results()
    {
        var insert = new HeldInsert();
        await using var groups = new PostgresEnqueueGroups(insert.InsertAsync);
        var held = await HoldEveryLoopAsync(groups, insert);
        var batches = Enumerable.Range(0, 10).Select(i => Enumerable.Range(0, i + 1).Select(_ => Message()).ToArray()).ToList();
        var calls = batches.Select(b => groups.EnqueueAsync(b, CancellationToken.None)).ToList();
        insert.Release();

        await held.WaitAsync(Deadline);
        for (var i = 0; i < batches.Count; i++)
        {
            var results = await calls[i].WaitAsync(Deadline);
            Assert.Equal(batches[i].Select(m => m.Id), results.Select(r => r.Id));
        }
        // The ten calls queued behind the held inserts went in one insert, not ten.
        Assert.Equal(PostgresEnqueueGroups.MaxInFlight + 1, insert.Inserts.Count);
        Assert.Equal(batches.Sum(b => b.Length), insert.Inserts[^1].Count);
    }

    [Fact]
    public async Task When_a_merged_insert_fails_each_call_is_retried_alone_and_only_the_culprit_fails()
    {
        var insert = new HeldInsert();
        var culprit = Message();
        insert.Fails = m => m.Id == culprit.Id;
        await using var groups = new PostgresEnqueueGroups(insert.InsertAsync);
        var held = await HoldEveryLoopAsync(groups, insert);
        var good = Enumerable.Range(0, 8).Select(_ => Message()).ToList();
        var calls = good.Take(4).Select(m => groups.EnqueueAsync([m], CancellationToken.None))
            .Append(groups.EnqueueAsync([Message(), culprit], CancellationToken.None))
            .Concat(good.Skip(4).Select(m => groups.EnqueueAsync([m], CancellationToken.None)))
            .ToList();
        insert.Release();

        await held.WaitAsync(Deadline);
        await Assert.ThrowsAsync<InvalidOperationException>(() => calls[4].WaitAsync(Deadline));
        foreach (var call in calls.Where((_, i) => i != 4))
        {
            Assert.True((await call.WaitAsync(Deadline))[0].Created);
        }
        // The merged attempt held all nine calls; it failed, and each was then inserted alone.
        Assert.Contains(insert.Inserts, ids => ids.Count == 10 && ids.Contains(culprit.Id));
        Assert.Contains(insert.Inserts, ids => ids.Count == 2 && ids.Contains(culprit.Id));
    }

    [Fact]
    public async Task A_group_stops_at_the_row_limit_unless_one_call_alone_is_larger()
    {
        var insert = new HeldInsert();
        await using var groups = new PostgresEnqueueGroups(insert.InsertAsync);
        var held = await HoldEveryLoopAsync(groups, insert);
        var big = Enumerable.Range(0, PostgresEnqueueGroups.MaxRowsPerGroup + 5).Select(_ => Message()).ToArray();
        var half = Enumerable.Range(0, PostgresEnqueueGroups.MaxRowsPerGroup / 2 + 1).Select(_ => Message()).ToArray();
        var calls = new[] { groups.EnqueueAsync(half, CancellationToken.None), groups.EnqueueAsync(half.Select(_ => Message()).ToArray(), CancellationToken.None), groups.EnqueueAsync(big, CancellationToken.None) };
        insert.Release();

        await Task.WhenAll(calls.Append(held)).WaitAsync(Deadline);
        Assert.All(insert.Inserts, ids => Assert.True(ids.Count <= PostgresEnqueueGroups.MaxRowsPerGroup || ids.Count == big.Length));
        Assert.Contains(insert.Inserts, ids => ids.Count == big.Length);
    }

    [Fact]
    public async Task A_dispose_waits_a_bounded_time_for_inserts_that_do_not_end_and_fails_the_calls_queued_behind_them()
    {
        var insert = new HeldInsert();
        var groups = new PostgresEnqueueGroups(insert.InsertAsync);
        var held = await HoldEveryLoopAsync(groups, insert);
        var queued = groups.EnqueueAsync([Message()], CancellationToken.None);

        // The held inserts stand for a server that does not answer: they end only when released (or at 10 s).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await groups.DisposeAsync().AsTask().WaitAsync(Deadline);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"the dispose took {clock.Elapsed}");
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queued.WaitAsync(Deadline));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => groups.EnqueueAsync([Message()], CancellationToken.None));

        // The inserts in flight still reach their callers when they end.
        insert.Release();
        await held.WaitAsync(Deadline);
        Assert.Equal(PostgresEnqueueGroups.MaxInFlight, insert.Inserts.Count);
    }

    [Fact]
    public async Task A_dispose_waits_for_a_backlog_as_long_as_its_inserts_keep_ending()
    {
        // Inserts of 1.2 s each, one call a group (600 rows: two do not fit in one), six calls: three rounds of the two
        // loops, 3.6 s in all, longer than the dispose's 2 s without an insert ending.
        var groups = new PostgresEnqueueGroups(async (messages, cancellationToken) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(1.2), cancellationToken);
            return messages.Select(m => new EnqueueResult(m.Id, true, TaskState.Queued)).ToArray();
        });
        var calls = Enumerable.Range(0, 6)
            .Select(_ => groups.EnqueueAsync(Enumerable.Range(0, 600).Select(_ => Message()).ToArray(), CancellationToken.None))
            .ToList();

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await groups.DisposeAsync().AsTask().WaitAsync(Deadline);
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(2), $"the dispose took {clock.Elapsed}: it did not wait for the backlog");
        foreach (var call in calls)
        {
            Assert.Equal(600, (await call.WaitAsync(Deadline)).Count);
        }
    }

    /// <summary>Puts one call into each loop, one after the other, each stuck in a held insert until
    /// <see cref="HeldInsert.Release"/>; returns (once all loops are held) the task of those calls.</summary>
    private static async Task<Task> HoldEveryLoopAsync(PostgresEnqueueGroups groups, HeldInsert insert)
    {
        var calls = new List<Task>();
        for (var i = 1; i <= PostgresEnqueueGroups.MaxInFlight; i++)
        {
            calls.Add(groups.EnqueueAsync([Message()], CancellationToken.None));
            var deadline = DateTime.UtcNow + Deadline;
            while (insert.Started < i)
            {
                Assert.True(DateTime.UtcNow < deadline, "the loops did not take the holding calls");
                await Task.Delay(5);
            }
        }
        await insert.AllHeld.WaitAsync(Deadline);
        return Task.WhenAll(calls);
    }
}
