using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>Process-level: the server is killed with SIGKILL while tasks are enqueued and run, then restarted;
/// on SQLite and on PostgreSQL (CONVEYOR_TEST_POSTGRES, in a schema of its own that is dropped afterwards).</summary>
public sealed class CrashRecoveryTests : IDisposable
{
    private const int TotalTasks = 20_000;
    private const int KillAfterAcknowledged = 10_000;
    private const int Clients = 8;
    // The server's worker runs or holds at most this many fetched tasks (WorkerOptions.EffectivePrefetch at its
    // defaults); at a kill it may hold more leases: finished tasks whose outcome it had not written yet.
    private static readonly int DefaultPrefetch = new WorkerOptions().EffectivePrefetch;
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    private static Dictionary<string, string> Environment(string databaseUrl) =>
        FaultTests.ProcessEnvironment(new Dictionary<string, string> { ["DATABASE_URL"] = databaseUrl, ["PORT"] = "0" });

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public Task Server_killed_with_SIGKILL_loses_no_acknowledged_task(string backend) =>
        WithStoreAsync(backend, _folder, async databaseUrl =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var acknowledged = new HashSet<Guid>();

            // 1. Enqueue over HTTP from several keep-alive clients while the in-process worker runs them; kill -9 midway.
            DateTimeOffset killedAt;
            using (var server = await ServerProcess.StartAsync(_folder, Environment(databaseUrl)))
            {
                using var http = server.CreateClient();
                using var stop = new CancellationTokenSource();
                var clients = Enumerable.Range(0, Clients)
                    .Select(_ => EnqueueUntilAsync(http, acknowledged, KillAfterAcknowledged + 2_000, refusalsExpected: false, stop.Token))
                    .ToArray();
                await WaitUntilAsync(() => Count(acknowledged) >= KillAfterAcknowledged, TimeSpan.FromSeconds(60), "acknowledged enqueues");
                var beforeKill = await GetDefaultQueueAsync(http);
                Assert.True(beforeKill.Succeeded > 0, "the worker must be running tasks when the server is killed");
                killedAt = DateTimeOffset.UtcNow;
                server.Process.KillHard();
                await stop.CancelAsync();
                await Task.WhenAll(clients);
            }
            var acknowledgedBeforeKill = Count(acknowledged);
            Assert.True(acknowledgedBeforeKill >= KillAfterAcknowledged);
            // With no process running, the tasks still running in the store are the leases that died with the server.
            var heldAtKill = await CountRunningInStoreAsync(_folder, databaseUrl);

            // 2. Start again on the same data; enqueue the rest so that 20,000 were acknowledged in all.
            using (var server = await ServerProcess.StartAsync(_folder, Environment(databaseUrl)))
            {
                using var http = server.CreateClient();
                var clients = Enumerable.Range(0, Clients)
                    .Select(_ => EnqueueUntilAsync(http, acknowledged, TotalTasks, refusalsExpected: false, CancellationToken.None))
                    .ToArray();
                await Task.WhenAll(clients);
                Assert.True(Count(acknowledged) >= TotalTasks);

                // 3. Every acknowledged task ends succeeded; only those leased at the kill ran twice.
                await WaitForAllSucceededAsync(http, () => Count(acknowledged), TimeSpan.FromSeconds(120));
                var tasks = await ListAllTasksAsync(http);
                AssertEverySucceeded(acknowledged, tasks);

                var ranTwice = tasks.Values.Where(t => t.Attempts > 1).ToList();
                Assert.All(tasks.Values, t => Assert.InRange(t.Attempts, 1, 2));
                // Only a task that was leased (running) when the process died may run again: it must have
                // entered running before the kill, and been redelivered after it.
                Assert.All(ranTwice, t => Assert.True(t.FirstRunningAt <= killedAt.AddSeconds(1), $"task {t.Id} first ran at {t.FirstRunningAt:O}, after the kill at {killedAt:O}"));
                Assert.True(ranTwice.Count <= heldAtKill, $"{ranTwice.Count} tasks ran twice; at most the {heldAtKill} leases the killed server held may");
                Console.WriteLine($"SIGKILL test ({backend}): {acknowledgedBeforeKill} acknowledged before the kill, {heldAtKill} leases held at the kill "
                    + $"(prefetch {DefaultPrefetch}), {acknowledged.Count} in all, {tasks.Count} stored, {ranTwice.Count} ran twice; {clock.Elapsed.TotalSeconds:F0} s");
            }
        });
}
