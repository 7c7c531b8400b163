using Conveyor.AspNetCore.Stats;
using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Conveyor.Server.Tests;

/// <summary><see cref="SharedQueueCounts"/>: the queues' counts read once for the requests that can share a read.</summary>
public sealed class SharedQueueCountsUnitTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Without_a_max_age_each_request_gets_a_read_that_started_after_it_came()
    {
        var backend = new GatedBackend(new InMemoryBackend());
        var counts = new SharedQueueCounts(backend, TimeProvider.System);

        Assert.Empty(await counts.ReadAsync(TimeSpan.Zero, exact: false, CancellationToken.None));
        await backend.EnqueueAsync("emails");
        var queue = Assert.Single(await counts.ReadAsync(TimeSpan.Zero, exact: false, CancellationToken.None));

        Assert.Equal(1, queue.Count(TaskState.Queued));
        Assert.Equal(2, backend.Reads);
    }

    [Fact]
    public async Task Requests_that_come_while_a_read_runs_share_the_next_read_which_sees_what_they_wrote()
    {
        var backend = new GatedBackend(new InMemoryBackend()) { Held = true };
        var counts = new SharedQueueCounts(backend, TimeProvider.System);
        var first = counts.ReadAsync(TimeSpan.Zero, exact: false, CancellationToken.None);
        await backend.WaitForReadsAsync(1);

        // Written after the first read took its counts: the requests that come now must see it.
        await backend.EnqueueAsync("emails");
        var later = Enumerable.Range(0, 20).Select(_ => counts.ReadAsync(TimeSpan.Zero, exact: false, CancellationToken.None)).ToList();
        backend.Release();

        Assert.Empty(await first.WaitAsync(Deadline));
        foreach (var read in later)
        {
            Assert.Equal(1, Assert.Single(await read.WaitAsync(Deadline)).Count(TaskState.Queued));
        }
        Assert.Equal(2, backend.Reads);
    }

    [Fact]
    public async Task With_a_max_age_requests_share_the_last_read_until_it_is_that_old()
    {
        var time = new FakeTimeProvider();
        var backend = new GatedBackend(new InMemoryBackend());
        var counts = new SharedQueueCounts(backend, time);
        var maxAge = TimeSpan.FromSeconds(1);

        await counts.ReadAsync(maxAge, exact: false, CancellationToken.None);
        await backend.EnqueueAsync("emails");
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Empty(await counts.ReadAsync(maxAge, exact: false, CancellationToken.None));
        Assert.Equal(1, backend.Reads);

        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Single(await counts.ReadAsync(maxAge, exact: false, CancellationToken.None));
        Assert.Equal(2, backend.Reads);
        // A request without a max age does not take the last read, however new.
        Assert.Single(await counts.ReadAsync(TimeSpan.Zero, exact: false, CancellationToken.None));
        Assert.Equal(3, backend.Reads);
    }

    [Fact]
    public async Task Exact_counts_are_read_and_shared_apart_from_the_limited_ones()
    {
        var backend = new GatedBackend(new InMemoryBackend());
        var counts = new SharedQueueCounts(backend, new FakeTimeProvider());
        var maxAge = TimeSpan.FromSeconds(1);

        await counts.ReadAsync(maxAge, exact: false, CancellationToken.None);
        await counts.ReadAsync(maxAge, exact: true, CancellationToken.None);
        await counts.ReadAsync(maxAge, exact: true, CancellationToken.None);
        await counts.ReadAsync(maxAge, exact: false, CancellationToken.None);

        Assert.Equal([ITaskStore.FinishedCountLimit, int.MaxValue], backend.ReadLimits);
    }

    [Fact]
    public async Task A_failed_read_reaches_its_requests_and_is_not_kept()
    {
        var backend = new GatedBackend(new InMemoryBackend()) { Failures = 1 };
        var counts = new SharedQueueCounts(backend, new FakeTimeProvider());

        await Assert.ThrowsAsync<InvalidOperationException>(() => counts.ReadAsync(TimeSpan.FromSeconds(1), exact: false, CancellationToken.None));
        await backend.EnqueueAsync("emails");

        Assert.Single(await counts.ReadAsync(TimeSpan.FromSeconds(1), exact: false, CancellationToken.None));
        Assert.Equal(2, backend.Reads);
    }

    [Fact]
    public async Task A_request_that_gives_up_leaves_the_read_to_the_others()
    {
        var backend = new GatedBackend(new InMemoryBackend()) { Held = true };
        var counts = new SharedQueueCounts(backend, TimeProvider.System);
        using var cancel = new CancellationTokenSource();
        var impatient = counts.ReadAsync(TimeSpan.Zero, exact: false, cancel.Token);
        await backend.WaitForReadsAsync(1);
        var patient = counts.ReadAsync(TimeSpan.FromSeconds(1), exact: false, CancellationToken.None);

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => impatient);
        backend.Release();

        Assert.Empty(await patient.WaitAsync(Deadline));
        Assert.Equal(1, backend.Reads);
    }

    /// <summary>The in-memory backend whose queue counts are counted, and held until <see cref="Release"/> while
    /// <see cref="Held"/>: a read takes its counts, then waits.</summary>
    private sealed class GatedBackend(InMemoryBackend inner) : IConveyorBackend, ITaskStore
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _reads;

        public bool Held { get; init; }
        public int Failures { get; set; }
        public int Reads => Volatile.Read(ref _reads);

        public string Name => inner.Name;
        public IQueueBackend Queue => inner.Queue;
        public ITaskStore Store => this;
        public ICoordinationBackend Coordination => inner.Coordination;
        public IScheduleStore Schedules => inner.Schedules;
        public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;
        public INotifier Notifier => inner.Notifier;
        public ILimitStore Limits => inner.Limits;
        public BackendCapabilities Capabilities => inner.Capabilities;
        public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);
        public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => inner.CheckHealthAsync(cancellationToken);

        public async Task EnqueueAsync(string queue) =>
            await inner.Queue.EnqueueAsync([new TaskMessage { Id = Guid.CreateVersion7(), Task = "t", Queue = queue, CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

        public void Release() => _gate.TrySetResult();

        public async Task WaitForReadsAsync(int reads)
        {
            var deadline = DateTime.UtcNow + Deadline;
            while (Reads < reads)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{Reads} reads, waiting for {reads}");
                await Task.Delay(5);
            }
        }

        /// <summary>The finished-count limit of each read, in order.</summary>
        public List<int> ReadLimits { get; } = [];

        public Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken) =>
            GetQueuesAsync(ITaskStore.FinishedCountLimit, cancellationToken);

        public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(int finishedCountLimit, CancellationToken cancellationToken)
        {
            lock (ReadLimits)
            {
                ReadLimits.Add(finishedCountLimit);
            }
            var queues = await inner.Store.GetQueuesAsync(cancellationToken);
            Interlocked.Increment(ref _reads);
            if (Failures > 0)
            {
                Failures--;
                throw new InvalidOperationException("the store is down");
            }
            if (Held)
            {
                await _gate.Task.WaitAsync(cancellationToken);
            }
            return queues;
        }

        public Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken) => inner.Store.GetAsync(taskId, cancellationToken);
        public Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken) => inner.Store.ListAsync(query, cancellationToken);
        public Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken) =>
            inner.Store.PurgeFinishedAsync(finishedBefore, maxCount, cancellationToken);
        public Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken) =>
            inner.Store.DeleteAsync(taskIds, state, cancellationToken);
    }
}
