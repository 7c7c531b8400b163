using System.Diagnostics;
using System.Globalization;
using System.Net;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>A RabbitMQ node of the test class's own (scripts/services/rabbitmq.sh with CONVEYOR_RABBITMQ_DIR), so
/// that stopping it disturbs no other test; stopped and started again on the same data (durable queues and
/// persistent messages survive), and deleted at the end.</summary>
public sealed class PrivateBrokerFixture : IAsyncLifetime
{
    private readonly string _folder = TempFolder.Create();

    public string Url { get; private set; } = "";

    private Dictionary<string, string> ScriptEnvironment => new() { ["CONVEYOR_RABBITMQ_DIR"] = Path.Combine(_folder, "rabbitmq") };

    public async Task InitializeAsync() =>
        Url = (await RunServiceScriptAsync("rabbitmq", "start", ScriptEnvironment)).Trim().Split('\n')[^1].Trim();

    public Task StopAsync() => RunServiceScriptAsync("rabbitmq", "stop", ScriptEnvironment);

    /// <summary>Stops the broker with <c>stop</c> (rabbitmqctl) or <c>kill</c> (SIGKILL of its Erlang VM).</summary>
    public async Task StopAsync(string how)
    {
        IsDown = true;
        await RunServiceScriptAsync("rabbitmq", how, ScriptEnvironment);
    }

    public async Task StartAgainAsync()
    {
        await RunServiceScriptAsync("rabbitmq", "restart", ScriptEnvironment);
        IsDown = false;
    }

    /// <summary>Whether a test stopped the broker and has not started it again (it failed in between): the next test
    /// starts it first, so that one failure does not fail the tests after it.</summary>
    public bool IsDown { get; private set; }

    /// <summary>A broker queue's messages (ready and unacknowledged) and consumers; null when it does not exist.</summary>
    public async Task<(long Messages, int Consumers)?> QueueAsync(string name)
    {
        foreach (var line in (await RunServiceScriptAsync("rabbitmq", "queues", ScriptEnvironment)).Split('\n'))
        {
            var fields = line.Split('\t', StringSplitOptions.TrimEntries);
            if (fields.Length == 3 && fields[0] == name)
            {
                return (long.Parse(fields[1], CultureInfo.InvariantCulture), int.Parse(fields[2], CultureInfo.InvariantCulture));
            }
        }
        return null;
    }

    public async Task DisposeAsync()
    {
        await StopAsync();
        TempFolder.Delete(_folder);
    }
}

/// <summary>
/// Process-level faults on the RabbitMQ queue role, paired with a SQLite file or a PostgreSQL schema as the store:
/// the broker stopped and started again while a <c>conveyor server</c> runs 20,000 tasks, and a <c>conveyor worker</c>
/// killed with SIGKILL while it holds tasks. Enqueues go through the server's API; one counts as acknowledged once
/// the server answered it (201, or the batch's ids).
/// </summary>
public sealed class RabbitMqFaultTests(PrivateBrokerFixture broker) : IClassFixture<PrivateBrokerFixture>, IDisposable
{
    private const int RestartTasks = 20_000;
    private const int KillTasks = 20_000;
    // A worker runs or holds at most this many fetched tasks (WorkerOptions.EffectivePrefetch at its defaults); it may
    // hold more leases than that at a kill: finished tasks whose outcome it had not written yet.
    private static readonly int DefaultPrefetch = new WorkerOptions().EffectivePrefetch;
    private readonly string _folder = TempFolder.Create();
    private readonly string _prefix = "cvfault" + Guid.NewGuid().ToString("N")[..12];

    public void Dispose() => TempFolder.Delete(_folder);

    private Dictionary<string, string> Environment(string databaseUrl) => FaultTests.ProcessEnvironment(new Dictionary<string, string>
    {
        ["DATABASE_URL"] = databaseUrl,
        ["AMQP_URL"] = broker.Url,
        ["CONVEYOR_RABBITMQ__PREFIX"] = _prefix,
        ["PORT"] = "0",
    });

    [Theory]
    [InlineData("sqlite", "stop")]
    [InlineData("postgres", "stop")]
    [InlineData("sqlite", "kill")]
    [InlineData("postgres", "kill")]
    public Task Broker_stopped_and_restarted_while_tasks_run_loses_no_acknowledged_task(string store, string stop) =>
        WithStoreAsync(store, _folder, async databaseUrl =>
        {
            var clock = Stopwatch.StartNew();
            if (broker.IsDown)
            {
                await broker.StartAgainAsync();
            }
            var environment = Environment(databaseUrl);
            // Information, to see the backend's "restored" line as well as its "lost" line.
            environment["LOG_LEVEL"] = "information";
            using var server = await ServerProcess.StartAsync(_folder, environment);
            using var http = server.CreateClient(TimeSpan.FromSeconds(30));
            var acknowledged = new HashSet<Guid>();

            // Enqueue batches all along (about 1,000 tasks/s) while the server's worker runs them: before, during and
            // after the outage, until 20,000 were acknowledged and 2,000 of them after the restart. While the broker
            // is down the store still takes them (its row is the outbox); a request refused or broken meanwhile is
            // counted and not acknowledged.
            using var stopEnqueuing = new CancellationTokenSource(TimeSpan.FromSeconds(180));
            var enqueuers = Enumerable.Range(0, 2)
                .Select(_ => EnqueueUntilAsync(http, acknowledged, int.MaxValue, refusalsExpected: true, stopEnqueuing.Token, batchSize: 50, pause: TimeSpan.FromMilliseconds(100)))
                .ToArray();
            await WaitUntilAsync(() => Count(acknowledged) >= RestartTasks / 4, TimeSpan.FromSeconds(60), "a quarter of the enqueues");
            var before = await GetDefaultQueueAsync(http);
            Assert.True(before.Succeeded > 0, $"the worker must be running tasks when the broker stops; {before}");

            var acknowledgedBeforeStop = Count(acknowledged);
            var outage = Stopwatch.StartNew();
            await broker.StopAsync(stop);
            var stoppedIn = outage.Elapsed;
            var downBody = "";
            await WaitUntilAsync(async () =>
            {
                (var status, downBody) = await GetReadyAsync(http);
                return status == HttpStatusCode.ServiceUnavailable;
            }, TimeSpan.FromSeconds(15), "/health/ready to report the broker outage");
            Assert.Contains("rabbitmq", downBody, StringComparison.Ordinal);
            var during = await GetDefaultQueueAsync(http);
            // The broker stays down for 3 s; /health/ready says so all along.
            await Task.Delay(TimeSpan.FromSeconds(3));
            var (stillDown, stillDownBody) = await GetReadyAsync(http);
            Assert.True(stillDown == HttpStatusCode.ServiceUnavailable, $"/health/ready answered {stillDown} while the broker was down: {stillDownBody}");
            var whileDown = await GetDefaultQueueAsync(http);
            var acknowledgedWhileDown = Count(acknowledged) - acknowledgedBeforeStop;
            Assert.True(acknowledgedWhileDown > 0, "no enqueue was acknowledged while the broker was down, though the store took them");
            // The worker goes on from the store while the broker is down, but its wake-ups come through the broker: an idle
            // worker finds new work only by its fallback poll (Worker:FetchWait, 5 s), longer than this 3 s window. In the
            // kill runs the worker had caught up when the broker died (in the stop runs, rabbitmqctl takes seconds to stop,
            // and a backlog kept the worker fetching), so only the stop runs assert progress here; nothing is lost in either.
            if (stop == "stop")
            {
                Assert.True(whileDown.Succeeded > during.Succeeded, $"the worker ran no task while the broker was down: {during} then {whileDown}");
            }
            await broker.StartAgainAsync();
            var downFor = outage.Elapsed;

            await WaitUntilAsync(async () => (await GetReadyAsync(http)).Status == HttpStatusCode.OK, TimeSpan.FromSeconds(60),
                "/health/ready to be healthy again after the broker restart");
            var readyAfter = outage.Elapsed - downFor;
            var acknowledgedAtReady = Count(acknowledged);
            await WaitUntilAsync(() => Count(acknowledged) >= Math.Max(RestartTasks, acknowledgedAtReady + 2_000), TimeSpan.FromSeconds(60), "enqueues after the restart");
            await stopEnqueuing.CancelAsync();
            var refused = (await Task.WhenAll(enqueuers)).Sum();

            await WaitForAllSucceededAsync(http, () => Count(acknowledged), TimeSpan.FromSeconds(120));
            var tasks = await ListAllTasksAsync(http);
            AssertEverySucceeded(acknowledged, tasks);
            var ranTwice = tasks.Values.Count(t => t.Attempts > 1);
            // The consumer is back: the broker queue drains (every delivery acked) and has a consumer.
            try
            {
                await WaitForBrokerQueueToDrainAsync();
            }
            catch (Xunit.Sdk.XunitException e)
            {
                // What the server said of the broker, for the next look at a failure of this step.
                var said = (server.Process.Output + server.Process.Error).Split('\n')
                    .Where(line => line.Contains("RabbitMQ", StringComparison.Ordinal) || line.Contains("warn:", StringComparison.Ordinal) || line.Contains("fail:", StringComparison.Ordinal));
                throw new Xunit.Sdk.XunitException($"{e.Message}\nThe server's lines about the broker, warnings and failures:\n{string.Join('\n', said.TakeLast(60))}");
            }

            // The backend logged the outage once, and its end once; no request failed over it.
            var logs = server.Process.Output + server.Process.Error;
            Assert.True(Occurrences(logs, "Lost the connection to RabbitMQ") == 1, logs);
            Assert.True(Occurrences(logs, "Could not publish to RabbitMQ") == 1, logs);
            Assert.True(Occurrences(logs, "Connection to RabbitMQ 127.0.0.1") == 1, logs);
            Assert.True(Occurrences(logs, "fail: Microsoft.AspNetCore.Diagnostics.ExceptionHandlerMiddleware") == 0, logs);
            Console.WriteLine(
                $"RabbitMQ broker restart test ({store}, {stop}): at the stop {acknowledgedBeforeStop} acknowledged, {before.Succeeded} succeeded; "
                + $"broker stopped in {stoppedIn.TotalSeconds:F1} s, down {downFor.TotalSeconds:F1} s (succeeded while down: {during.Succeeded} → {whileDown.Succeeded}, "
                + $"{acknowledgedWhileDown} acknowledged while down), ready again {readyAfter.TotalSeconds:F1} s after the restart; {Count(acknowledged)} acknowledged, "
                + $"{refused} enqueue requests refused, {tasks.Count} stored, {ranTwice} ran twice; "
                + $"{clock.Elapsed.TotalSeconds:F0} s; log: {LogSummary(logs)}");
            Console.WriteLine($"503 body while down: {downBody}");
        });

    /// <summary>Waits until the default queue's broker queue holds no message (ready or unacked) and has a consumer;
    /// prints how long that took.</summary>
    private async Task WaitForBrokerQueueToDrainAsync()
    {
        var name = _prefix + ".q.default";
        (long Messages, int Consumers)? first = null, last = null;
        var clock = Stopwatch.StartNew();
        await WaitUntilAsync(async () =>
        {
            last = await broker.QueueAsync(name);
            first ??= last;
            return last is (0, > 0);
        }, TimeSpan.FromSeconds(60),
            () => $"the broker queue {name} to drain, with a consumer (last seen: messages and consumers {last})");
        Console.WriteLine($"broker queue {name}: {first?.Messages} messages after every task succeeded, drained in {clock.Elapsed.TotalSeconds:F1} s");
    }

    private static int Occurrences(string text, string value) => text.Split(value).Length - 1;

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public Task Worker_killed_with_SIGKILL_loses_nothing_on_rabbitmq(string store) =>
        WithStoreAsync(store, _folder, async databaseUrl =>
        {
            var clock = Stopwatch.StartNew();
            // The API (and a scheduler candidate) in one process; the work in separate worker processes.
            using var server = await ServerProcess.StartAsync(_folder, Environment(databaseUrl), "--no-worker");
            using var http = server.CreateClient(TimeSpan.FromSeconds(30));
            var acknowledged = new HashSet<Guid>();
            DateTimeOffset killedAt;
            FaultTests.QueueCounts atKill;
            string firstLog;
            // A backlog first (published to the broker queue), so that the worker is busy (holds a full prefetch of
            // leases and deliveries) all along until it is killed. Each task sleeps 5 ms: no-op tasks were all done
            // between two polls of the counts on a SQLite store (a clean-clone CI saw 20,000 succeeded at the first
            // poll past 0), and then the worker held nothing when it was killed.
            await EnqueueUntilAsync(http, acknowledged, KillTasks, refusalsExpected: false, CancellationToken.None, batchSize: 500,
                task: """{"task":"conveyor.sleep","args":{"ms":5}}""");
            Assert.True(Count(acknowledged) >= KillTasks);
            using (var first = ConveyorProcess.Start(_folder, Environment(databaseUrl), "worker"))
            {
                await WaitUntilAsync(async () => (await GetDefaultQueueAsync(http)).Succeeded >= KillTasks / 4, TimeSpan.FromSeconds(60), "the first worker to run tasks");
                killedAt = DateTimeOffset.UtcNow;
                first.KillHard();
                // The server runs no worker: the tasks running now are exactly the leases that died with the worker
                // (those it fetched and those it finished but had not recorded yet).
                atKill = await GetDefaultQueueAsync(http);
                firstLog = first.Output + first.Error;
            }
            Assert.True(atKill.Running > 0, $"the worker held no task when it was killed: {atKill}");
            Assert.True(atKill.Pending > atKill.Running, $"every task ran before the kill: {atKill}");
            var restartedAt = clock.Elapsed;
            using var second = ConveyorProcess.Start(_folder, Environment(databaseUrl), "worker");
            await WaitForAllSucceededAsync(http, () => Count(acknowledged), TimeSpan.FromSeconds(120));

            var tasks = await ListAllTasksAsync(http);
            AssertEverySucceeded(acknowledged, tasks);
            var ranTwice = tasks.Values.Where(t => t.Attempts > 1).ToList();
            Console.WriteLine(
                $"RabbitMQ SIGKILL worker test ({store}): {acknowledged.Count} acknowledged; at the kill {atKill.Succeeded} succeeded, "
                + $"{atKill.Pending} pending, {atKill.Running} running (leases of the killed worker; its prefetch is {DefaultPrefetch}); second worker started at "
                + $"{restartedAt.TotalSeconds:F1} s; {tasks.Count} stored, {ranTwice.Count} ran twice; {clock.Elapsed.TotalSeconds:F0} s; killed worker's log: {LogSummary(firstLog)}");
            Assert.All(tasks.Values, t => Assert.InRange(t.Attempts, 1, 2));
            // Only a task leased by the killed worker may run again: it entered running before the kill, and it was
            // running when the worker died.
            Assert.All(ranTwice, t => Assert.True(t.FirstRunningAt <= killedAt.AddSeconds(1), $"task {t.Id} first ran at {t.FirstRunningAt:O}, after the kill at {killedAt:O}"));
            Assert.True(ranTwice.Count <= atKill.Running, $"{ranTwice.Count} tasks ran twice; at most the {atKill.Running} the killed worker held may");
            Assert.False(second.Output.Contains("Unhandled exception", StringComparison.Ordinal), second.Output);
            // The killed worker's unacked deliveries went back to the queue; the second worker consumed and acked them.
            await WaitForBrokerQueueToDrainAsync();
            Console.WriteLine($"RabbitMQ SIGKILL worker test ({store}): {clock.Elapsed.TotalSeconds:F0} s with the broker queue drained");
        });
}
