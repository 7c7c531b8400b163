using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Conveyor.Backends;
using Conveyor.Redis;
using StackExchange.Redis;

namespace Conveyor.Server.Tests;

/// <summary>Process-level faults on the Redis backend: a worker killed with SIGKILL, and the Redis server killed and
/// restarted while tasks run. Tasks are enqueued from this process straight through the backend; an enqueue counts
/// as acknowledged once <see cref="IQueueBackend.EnqueueAsync"/> returned.</summary>
public sealed class RedisFaultTests : IDisposable
{
    private const int TotalTasks = 3_000;
    private const int BatchSize = 20;
    // Default prefetch of a worker with concurrency 16: at most this many leases die with it.
    private const int Prefetch = 64;
    private readonly string _folder = TempFolder.Create();
    private readonly string _prefix = "cvfault-" + Guid.NewGuid().ToString("N");

    public void Dispose() => TempFolder.Delete(_folder);

    private Dictionary<string, string> WorkerEnvironment(string url) => new()
    {
        ["REDIS_URL"] = url,
        ["CONVEYOR_REDIS__KEY_PREFIX"] = _prefix,
        ["LOG_LEVEL"] = "warning",
        // Short leases so that the tasks a killed worker held are redelivered within seconds, not 30 s.
        ["CONVEYOR_WORKER__LEASE_DURATION"] = "00:00:03",
        ["CONVEYOR_WORKER__HEARTBEAT_INTERVAL"] = "00:00:01",
        ["CONVEYOR_SCHEDULER__REAPER_INTERVAL"] = "00:00:01",
        ["CONVEYOR_SCHEDULER__LEADER_LEASE"] = "00:00:03",
    };

    private static string TestRedisUrl =>
        Environment.GetEnvironmentVariable("CONVEYOR_TEST_REDIS") is { Length: > 0 } url
            ? url
            : throw new InvalidOperationException(
                "CONVEYOR_TEST_REDIS is not set: run 'bash scripts/test.sh' (it starts Redis), or 'source scripts/services/redis.sh' and run the tests from that shell.");

    [Fact]
    public async Task Worker_killed_with_SIGKILL_loses_nothing_on_redis()
    {
        var url = TestRedisUrl;
        var backend = new RedisBackend(new RedisBackendOptions { Configuration = url, KeyPrefix = _prefix });
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
            var acknowledged = new List<Guid>();
            DateTimeOffset killedAt;
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            Task<int> enqueuer;
            using (var first = ConveyorProcess.Start(_folder, WorkerEnvironment(url), "worker"))
            {
                await WaitUntilAsync(async () => (await backend.ListWorkersAsync(DateTimeOffset.UtcNow.AddMinutes(-1), CancellationToken.None)).Count > 0,
                    TimeSpan.FromSeconds(60), "the first worker to start");
                // Enqueue all along (about 1,000 tasks/s), so that the worker holds leases when it is killed.
                enqueuer = EnqueueAsync(backend, acknowledged, TotalTasks, stop.Token, pause: TimeSpan.FromMilliseconds(20));
                await WaitUntilAsync(async () => (await CountsAsync(backend)).Succeeded >= 300, TimeSpan.FromSeconds(60), "the first worker to run tasks");
                killedAt = DateTimeOffset.UtcNow;
                first.KillHard();
            }
            Assert.True(Volatile.Read(ref _acknowledgedCount) < TotalTasks, "every task was enqueued before the kill: nothing ran while the worker died");
            using var second = ConveyorProcess.Start(_folder, WorkerEnvironment(url), "worker");
            await enqueuer;
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
            Assert.True(ranTwice.Count <= Prefetch, $"{ranTwice.Count} tasks ran twice; at most the killed worker's {Prefetch} leases may");
            Console.WriteLine($"Redis SIGKILL worker test: {acknowledged.Count} acknowledged, {tasks.Count} stored, {ranTwice.Count} ran twice (killed at {killedAt:O})");
        }
        finally
        {
            await DeleteKeysAsync(url, _prefix);
            await backend.DisposeAsync();
        }
    }

    [Fact]
    public async Task Redis_killed_and_restarted_while_tasks_run_loses_no_acknowledged_task()
    {
        using var redis = PrivateRedis.Start(Path.Combine(_folder, "redis"));
        var url = redis.Url;
        var backend = new RedisBackend(new RedisBackendOptions { Configuration = url, KeyPrefix = _prefix });
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
            using var worker = ConveyorProcess.Start(_folder, WorkerEnvironment(url), "worker");
            var acknowledged = new List<Guid>();
            await EnqueueAsync(backend, acknowledged, TotalTasks / 3, CancellationToken.None);
            await WaitUntilAsync(async () => (await CountsAsync(backend)).Succeeded >= 200, TimeSpan.FromSeconds(60), "the worker to run tasks");

            // Enqueue on while Redis is killed (SIGKILL) and, 2 s later, started again on the same data.
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            var enqueuer = EnqueueAsync(backend, acknowledged, TotalTasks, stop.Token);
            await WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref _acknowledgedCount) >= TotalTasks / 2), TimeSpan.FromSeconds(60), "half the enqueues");
            redis.Kill();
            Assert.True(Volatile.Read(ref _acknowledgedCount) < TotalTasks, "every task was enqueued before Redis was killed");
            await Task.Delay(TimeSpan.FromSeconds(2));
            redis.Restart();
            // StackExchange.Redis holds commands issued while disconnected in its backlog (up to its 5 s timeout), so
            // most enqueues made during the outage wait and succeed; one in flight at the kill fails and is made again.
            var failedBatches = await enqueuer;

            await WaitUntilAsync(async () =>
            {
                var counts = await CountsAsync(backend);
                return counts.Succeeded >= acknowledged.Count && counts.Pending == 0;
            }, TimeSpan.FromSeconds(120), "every task to succeed after the restart");
            var tasks = await ListAllAsync(backend);
            AssertEverySucceeded(acknowledged, tasks);
            var ranTwice = tasks.Values.Count(t => t.Attempts > 1);
            Console.WriteLine($"Redis restart test: {acknowledged.Count} acknowledged, {failedBatches} batches refused while Redis was down, {tasks.Count} stored, {ranTwice} ran twice");
            Assert.False(worker.Output.Contains("Unhandled exception", StringComparison.Ordinal), worker.Output);
            // The worker logged the outage once, not once per connection or per reconnect attempt.
            var logs = worker.Output + worker.Error;
            Assert.True(logs.Split("Lost the connection to Redis").Length - 1 == 1, logs);
        }
        finally
        {
            await backend.DisposeAsync();
        }
    }

    private static void AssertEverySucceeded(List<Guid> acknowledged, Dictionary<Guid, TaskRecord> tasks)
    {
        var missing = acknowledged.Where(id => !tasks.ContainsKey(id)).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} acknowledged tasks are missing, e.g. {missing.FirstOrDefault()}");
        var notSucceeded = acknowledged.Where(id => tasks[id].State != TaskState.Succeeded).ToList();
        Assert.True(notSucceeded.Count == 0, $"{notSucceeded.Count} tasks did not succeed, e.g. {notSucceeded.FirstOrDefault()}");
    }

    // Enqueues batches of no-op tasks until target were acknowledged; a batch that fails (Redis down) is tried again
    // as a new batch with new ids, since a failed call acknowledged nothing.
    private int _acknowledgedCount;

    private async Task<int> EnqueueAsync(RedisBackend backend, List<Guid> acknowledged, int target, CancellationToken cancellationToken, TimeSpan? pause = null)
    {
        var failed = 0;
        while (acknowledged.Count < target)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var now = DateTimeOffset.UtcNow;
            var batch = Enumerable.Range(0, Math.Min(BatchSize, target - acknowledged.Count))
                .Select(_ => new TaskMessage { Id = Guid.CreateVersion7(now), Task = "conveyor.noop", Args = "{}", CreatedAt = now })
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

    private sealed record Counts(long Succeeded, long Pending);

    private static async Task<Counts> CountsAsync(RedisBackend backend)
    {
        try
        {
            var queue = (await backend.GetQueuesAsync(CancellationToken.None)).SingleOrDefault(q => q.Name == QueueNames.Default);
            return queue is null
                ? new Counts(0, 0)
                : new Counts(queue.Count(TaskState.Succeeded), queue.Count(TaskState.Queued) + queue.Count(TaskState.Running) + queue.Count(TaskState.Scheduled) + queue.Count(TaskState.Retrying));
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return new Counts(0, 1);
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

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out after {timeout} waiting for {what}");
            await Task.Delay(100);
        }
    }

    private static async Task DeleteKeysAsync(string url, string prefix)
    {
        using var connection = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(url));
        var server = connection.GetServer(connection.GetEndPoints()[0]);
        var keys = new List<RedisKey>();
        await foreach (var key in server.KeysAsync(pattern: "\\{" + prefix + "\\}:*"))
        {
            keys.Add(key);
        }
        if (keys.Count > 0)
        {
            await connection.GetDatabase().KeyDeleteAsync(keys.ToArray());
        }
    }

    /// <summary>A redis-server of this test's own (not the shared test server, which other tests use meanwhile),
    /// on a free loopback port with AOF (everysec) in a private folder; killed and restarted on the same data.</summary>
    private sealed class PrivateRedis : IDisposable
    {
        private readonly string _folder;
        private readonly int _port;
        private Process _process;

        private PrivateRedis(string folder, int port)
        {
            _folder = folder;
            _port = port;
            _process = Launch();
        }

        public string Url => $"redis://127.0.0.1:{_port.ToString(CultureInfo.InvariantCulture)}";

        public static PrivateRedis Start(string folder)
        {
            Directory.CreateDirectory(folder);
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return new PrivateRedis(folder, port);
        }

        public void Kill()
        {
            _process.Kill();
            _process.WaitForExit();
            _process.Dispose();
        }

        public void Restart() => _process = Launch();

        private Process Launch()
        {
            var info = new ProcessStartInfo("redis-server")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var arg in new[]
            {
                "--bind", "127.0.0.1", "--port", _port.ToString(CultureInfo.InvariantCulture), "--dir", _folder,
                "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--save", "",
                "--daemonize", "no",
            })
            {
                info.ArgumentList.Add(arg);
            }
            var process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (true)
            {
                try
                {
                    using var client = new TcpClient();
                    client.Connect(IPAddress.Loopback, _port);
                    return process;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
                {
                    Thread.Sleep(50);
                }
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit();
            }
            _process.Dispose();
        }
    }
}
