using System.Diagnostics;
using System.Net;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>
/// Process-level fault test: while a server process runs 20,000 tasks on PostgreSQL, the PostgreSQL server itself is
/// stopped (a fast shutdown, or an immediate one, as a power cut: the restart then runs crash recovery from the WAL)
/// and started again. The server's worker, scheduler and LISTEN connection reconnect with backoff,
/// /health/ready reports the outage while it lasts, and every acknowledged task ends succeeded. Runs a private
/// cluster of its own (scripts/services/postgres.sh with CONVEYOR_POSTGRES_DIR), so stopping it disturbs no other test.
/// </summary>
public sealed class PostgresRestartTests : IDisposable
{
    private const int TotalTasks = 20_000;
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Theory]
    [InlineData("stop")]
    [InlineData("crash")]
    public async Task PostgreSQL_stopped_and_restarted_while_tasks_run_loses_nothing(string shutdown)
    {
        var clock = Stopwatch.StartNew();
        var script = new Dictionary<string, string> { ["CONVEYOR_POSTGRES_DIR"] = Path.Combine(_folder, "pg") };
        var started = await RunServiceScriptAsync("postgres", "start", script);
        var url = started.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("export CONVEYOR_TEST_POSTGRES=", StringComparison.Ordinal))["export CONVEYOR_TEST_POSTGRES=".Length..];
        try
        {
            var environment = FaultTests.ProcessEnvironment(new Dictionary<string, string> { ["DATABASE_URL"] = url, ["PORT"] = "0" }, lease: "00:00:05");
            using var server = await ServerProcess.StartAsync(_folder, environment);
            using var http = server.CreateClient(TimeSpan.FromSeconds(30));

            // Enqueue batches of 500 as fast as the server takes them (faster than its worker runs them), before,
            // during and after the outage, until 20,000 were acknowledged; a batch refused while PostgreSQL is down
            // acknowledged nothing and is made again.
            var acknowledged = new HashSet<Guid>();
            using var stopEnqueuing = new CancellationTokenSource(TimeSpan.FromSeconds(180));
            var enqueuer = EnqueueUntilAsync(http, acknowledged, TotalTasks, refusalsExpected: true, stopEnqueuing.Token, batchSize: 500);

            // Stop PostgreSQL while the worker is part-way through, keep it down for 3 s, then start it again.
            // A worker that keeps pace with the enqueuer leaves nothing waiting between batches: stop at a moment when some wait.
            QueueCounts before = new(0, 0, 0);
            await WaitUntilAsync(async () =>
            {
                before = await GetDefaultQueueAsync(http);
                return before.Succeeded >= 2_000 && before.Pending > 0;
            }, TimeSpan.FromSeconds(60), "the first tasks to run, with more waiting");
            var acknowledgedBeforeStop = Count(acknowledged);
            Assert.True(before.Pending > 0, "tasks must still be waiting when PostgreSQL stops");
            var outage = Stopwatch.StartNew();
            await RunServiceScriptAsync("postgres", shutdown, script);
            var downBody = "";
            await WaitUntilAsync(async () =>
            {
                (var status, downBody) = await GetReadyAsync(http);
                return status == HttpStatusCode.ServiceUnavailable;
            }, TimeSpan.FromSeconds(15), "/health/ready to report the outage");
            await Task.Delay(TimeSpan.FromSeconds(3));
            var (stillDown, stillDownBody) = await GetReadyAsync(http);
            Assert.True(stillDown == HttpStatusCode.ServiceUnavailable, $"/health/ready answered {stillDown} while PostgreSQL was down: {stillDownBody}");
            await RunServiceScriptAsync("postgres", "restart", script);
            var downFor = outage.Elapsed;

            // The worker reports itself reachable again at its next successful call (a fetch, after its backoff).
            await WaitUntilAsync(async () => (await GetReadyAsync(http)).Status == HttpStatusCode.OK, TimeSpan.FromSeconds(60),
                "/health/ready to be healthy again");
            var readyAfter = outage.Elapsed - downFor;
            var refused = await enqueuer;
            await WaitForAllSucceededAsync(http, () => Count(acknowledged), TimeSpan.FromSeconds(120));

            var tasks = await ListAllTasksAsync(http);
            AssertEverySucceeded(acknowledged, tasks);
            var ranTwice = tasks.Values.Count(t => t.Attempts > 1);
            var logs = server.Process.Output + server.Process.Error;
            Console.WriteLine(
                $"PostgreSQL restart test ({shutdown}): at the stop {acknowledgedBeforeStop} acknowledged, {before.Succeeded} succeeded, {before.Pending} pending; "
                + $"down {downFor.TotalSeconds:F1} s, ready again {readyAfter.TotalSeconds:F1} s after the restart; {acknowledged.Count} acknowledged, "
                + $"{refused} batches refused, {tasks.Count} stored, all acknowledged succeeded; {ranTwice} ran more than once; "
                + $"{clock.Elapsed.TotalSeconds:F0} s; log: {LogSummary(logs)}");
            Console.WriteLine($"503 body while down: {downBody}");
            // Requests refused during the outage answered 503 and the outage was logged once (twice at most, should a
            // request succeed while PostgreSQL is shutting down), not as an unhandled exception (an error and a stack
            // trace) per request.
            Assert.True(logs.Split("ExceptionHandlerMiddleware").Length == 1, logs);
            var outageLines = logs.Split("The postgres backend is unavailable").Length - 1;
            Assert.True(outageLines >= (refused > 0 ? 1 : 0) && outageLines <= 2, $"{outageLines} outage lines for {refused} refused batches: {logs}");
        }
        finally
        {
            await RunServiceScriptAsync("postgres", "stop", script);
        }
    }
}
