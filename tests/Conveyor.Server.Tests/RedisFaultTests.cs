using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Conveyor.Backends;
using Conveyor.Redis;
using Conveyor.TestBackends;
using StackExchange.Redis;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>Process-level faults on the Redis backend: a worker killed with SIGKILL, and the Redis server killed and
/// restarted while a server process runs tasks. Tasks are enqueued from this process straight through the backend; an
/// enqueue counts as acknowledged once <see cref="IQueueBackend.EnqueueAsync"/> returned.</summary>
public sealed class RedisFaultTests : IDisposable
{
    private const int TotalTasks = 20_000;
    private const int BatchSize = 100;
    // A worker runs or holds at most this many fetched tasks (WorkerOptions.EffectivePrefetch at its defaults); at a kill
    // it may hold more leases: finished tasks whose outcome it had not written yet.
    private static readonly int Prefetch = new WorkerOptions().EffectivePrefetch;
    private readonly string _folder = TempFolder.Create();
    private readonly string _prefix = "cvfault-" + Guid.NewGuid().ToString("N");

    public void Dispose() => TempFolder.Delete(_folder);

    private static Dictionary<string, string> WorkerEnvironment(RedisKeyspace keyspace) =>
        FaultTests.ProcessEnvironment(new Dictionary<string, string>(keyspace.ToEnvironment()));

    [Fact]
    public async Task Worker_killed_with_SIGKILL_loses_nothing_on_redis()
    {
        var keyspace = new RedisKeyspace(TestServers.Redis, _prefix);
        var backend = keyspace.Create(connection: null);
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var acknowledged = new List<Guid>();
            DateTimeOffset killedAt;
            Counts atKill;
            // A backlog first, so that the worker is busy (holds a full prefetch of leases) all along until it is killed;
            // a Redis worker runs no-op tasks faster than one client enqueues them. Tasks of 5 ms: at its 16 handlers the
            // worker runs at most about 3,200 a second, so that the rest of the backlog lasts seconds past the poll that
            // sees a quarter done (no-op tasks were all done, at times, by the time that poll's kill came).
            await EnqueueAsync(backend, acknowledged, TotalTasks, CancellationToken.None, task: SleepTask.Name, args: """{"ms":5}""");
            using (var first = ConveyorProcess.Start(_folder, WorkerEnvironment(keyspace), "worker"))
            {
                await WaitUntilAsync(async () => (await CountsAsync(backend)).Succeeded >= TotalTasks / 4, TimeSpan.FromSeconds(60), "the first worker to run tasks");
                killedAt = DateTimeOffset.UtcNow;
                first.KillHard();
                // No other worker runs yet: the tasks running now are the leases that died with this one.
                atKill = await CountsAsync(backend);
            }
            Assert.True(atKill.Running > 0, $"the worker held no task when it was killed: {atKill}");
            Assert.True(atKill.Pending > atKill.Running, $"every task ran before the kill: {atKill}");
            using var second = ConveyorProcess.Start(_folder, WorkerEnvironment(keyspace), "worker");
            await WaitUntilAsync(async () =>
            {
                var counts = await CountsAsync(backend);
                return counts.Succeeded >= acknowledged.Count && counts.Pending == 0;
            }, TimeSpan.FromSeconds(120), "every task to succeed");

            var tasks = await ListAllAsync(backend);
            AssertEverySucceeded(acknowledged, tasks);
            var ranTwice = tasks.Values.Where(t => t.Attempts > 1).ToList();
            Assert.All(tasks.Values, t => Assert.InRange(t.Attempts, 1, 2));
            Assert.All(ranTwice, t => Assert.True(t.StartedAt is not null));
            Assert.True(ranTwice.Count <= atKill.Running, $"{ranTwice.Count} tasks ran twice; at most the {atKill.Running} leases the killed worker held may");
            Console.WriteLine($"Redis SIGKILL worker test: {acknowledged.Count} acknowledged, at the kill {atKill.Succeeded} succeeded and {atKill.Running} running (prefetch {Prefetch}), "
                + $"{tasks.Count} stored, {ranTwice.Count} ran twice (killed at {killedAt:O}); {clock.Elapsed.TotalSeconds:F0} s");
        }
        finally
        {
            await backend.DeleteKeysAsync(CancellationToken.None);
            await backend.DisposeAsync();
        }
    }

    [Fact]
    public async Task Redis_killed_and_restarted_while_tasks_run_loses_no_acknowledged_task()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using var redis = await PrivateRedis.StartAsync(Path.Combine(_folder, "redis"));
        var keyspace = new RedisKeyspace(redis.Url, _prefix);
        var backend = keyspace.Create(connection: null);
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
            // A server process (API, health, worker, scheduler): /health/ready must report the outage while it lasts.
            var environment = WorkerEnvironment(keyspace);
            environment["PORT"] = "0";
            using var server = await ServerProcess.StartAsync(_folder, environment);
            using var http = server.CreateClient();
            var acknowledged = new List<Guid>();
            await EnqueueAsync(backend, acknowledged, TotalTasks / 4, CancellationToken.None);
            await WaitUntilAsync(async () => (await CountsAsync(backend)).Succeeded >= 1_000, TimeSpan.FromSeconds(60), "the worker to run tasks");

            // Enqueue on while Redis is killed (SIGKILL) and, 2 s later, started again on the same data.
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            var enqueuer = EnqueueAsync(backend, acknowledged, TotalTasks, stop.Token);
            await WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref _acknowledgedCount) >= TotalTasks / 2), TimeSpan.FromSeconds(60), "half the enqueues");
            var before = await CountsAsync(backend);
            var outage = System.Diagnostics.Stopwatch.StartNew();
            await redis.KillAsync();
            Assert.True(Volatile.Read(ref _acknowledgedCount) < TotalTasks, "every task was enqueued before Redis was killed");
            var downBody = "";
            await WaitUntilAsync(async () =>
            {
                (var status, downBody) = await GetReadyAsync(http);
                return status == HttpStatusCode.ServiceUnavailable;
            }, TimeSpan.FromSeconds(15), "/health/ready to report the Redis outage");
            Assert.Contains("Redis", downBody, StringComparison.OrdinalIgnoreCase);
            var seenDownAfter = outage.Elapsed;
            await Task.Delay(TimeSpan.FromSeconds(2) - seenDownAfter is { Ticks: > 0 } rest ? rest : TimeSpan.Zero);
            var (stillDown, stillDownBody) = await GetReadyAsync(http);
            Assert.True(stillDown == HttpStatusCode.ServiceUnavailable, $"/health/ready answered {stillDown} while Redis was down: {stillDownBody}");
            await redis.RestartAsync();
            var downFor = outage.Elapsed;
            await WaitUntilAsync(async () => (await GetReadyAsync(http)).Status == HttpStatusCode.OK, TimeSpan.FromSeconds(60),
                "/health/ready to be healthy again after the restart");
            var readyAfter = outage.Elapsed - downFor;
            // StackExchange.Redis holds commands issued while disconnected in its backlog (up to its 5 s timeout), so
            // most enqueues made during the outage wait and succeed; one in flight at the kill fails and is made again.
            var failedBatches = await enqueuer;

            // The last counts go into a timeout's message (CI once timed out here with nothing to go on).
            var lastCounts = "none read";
            await WaitUntilAsync(async () =>
            {
                var counts = await CountsAsync(backend);
                lastCounts = counts.ToString();
                return counts.Succeeded >= acknowledged.Count && counts.Pending == 0;
            }, TimeSpan.FromSeconds(120), () => $"every task to succeed after the restart ({acknowledged.Count} acknowledged; last seen {lastCounts})");
            var tasks = await ListAllAsync(backend);
            AssertEverySucceeded(acknowledged, tasks);
            var ranTwice = tasks.Values.Count(t => t.Attempts > 1);
            var logs = server.Process.Output + server.Process.Error;
            Console.WriteLine($"Redis restart test: at the kill {before.Succeeded} succeeded, {before.Pending} pending; /health/ready 503 after {seenDownAfter.TotalSeconds:F1} s, "
                + $"down {downFor.TotalSeconds:F1} s, ready again {readyAfter.TotalSeconds:F1} s after the restart; {acknowledged.Count} acknowledged, "
                + $"{failedBatches} batches refused while Redis was down, {tasks.Count} stored, {ranTwice} ran twice; "
                + $"{clock.Elapsed.TotalSeconds:F0} s; log: {LogSummary(logs)}");
            Console.WriteLine($"503 body while down: {downBody}");
            Assert.False(logs.Contains("Unhandled exception", StringComparison.Ordinal), logs);
            // The server logged the outage once, not once per connection or per reconnect attempt.
            Assert.True(logs.Split("Lost the connection to Redis").Length - 1 == 1, logs);
        }
        finally
        {
            await backend.DisposeAsync();
        }
    }

    private static void AssertEverySucceeded(List<Guid> acknowledged, Dictionary<Guid, TaskRecord> tasks) =>
        FaultTests.AssertEverySucceeded(acknowledged, tasks, t => t.State == TaskState.Succeeded, t => t.State.ToString());

    // Enqueues batches of no-op tasks until target were acknowledged; a batch that fails (Redis down) is tried again
    // as a new batch with new ids, since a failed call acknowledged nothing.
    private int _acknowledgedCount;

    private async Task<int> EnqueueAsync(RedisBackend backend, List<Guid> acknowledged, int target, CancellationToken cancellationToken, TimeSpan? pause = null,
        string task = NoopTask.Name, string args = "{}")
    {
        var failed = 0;
        while (acknowledged.Count < target)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var now = DateTimeOffset.UtcNow;
            var batch = Enumerable.Range(0, Math.Min(BatchSize, target - acknowledged.Count))
                .Select(_ => new TaskMessage { Id = Guid.CreateVersion7(now), Task = task, Args = args, CreatedAt = now })
                .ToList();
            try
            {
                var results = await backend.EnqueueAsync(batch, cancellationToken);
                acknowledged.AddRange(results.Select(r => r.Id));
                Volatile.Write(ref _acknowledgedCount, acknowledged.Count);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                failed++;
                await Task.Delay(100, cancellationToken);
            }
            await Task.Delay(pause ?? TimeSpan.FromMilliseconds(2), cancellationToken);
        }
        return failed;
    }

    private sealed record Counts(long Succeeded, long Pending, long Running);

    private static async Task<Counts> CountsAsync(RedisBackend backend)
    {
        try
        {
            var queue = (await backend.GetQueuesAsync(CancellationToken.None)).SingleOrDefault(q => q.Name == QueueNames.Default);
            return queue is null
                ? new Counts(0, 0, 0)
                : new Counts(queue.Count(TaskState.Succeeded), queue.Count(TaskState.Queued) + queue.Count(TaskState.Running) + queue.Count(TaskState.Scheduled) + queue.Count(TaskState.Retrying),
                    queue.Count(TaskState.Running));
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return new Counts(0, 1, 0);
        }
    }

    private static async Task<Dictionary<Guid, TaskRecord>> ListAllAsync(RedisBackend backend)
    {
        var tasks = new Dictionary<Guid, TaskRecord>();
        string? cursor = null;
        do
        {
            var page = await backend.ListAsync(new TaskQuery { Limit = 1000, Cursor = cursor }, CancellationToken.None);
            foreach (var task in page.Items)
            {
                tasks[task.Id] = task;
            }
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        return tasks;
    }
}
