using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary>Process-level: the server is killed with SIGKILL while tasks are enqueued and run, then restarted;
/// on SQLite and on PostgreSQL (CONVEYOR_TEST_POSTGRES, in a schema of its own that is dropped afterwards).</summary>
public sealed class CrashRecoveryTests : IDisposable
{
    private const int TotalTasks = 10_000;
    private const int KillAfterAcknowledged = 5_000;
    private const int Clients = 8;
    // The server's worker holds at most this many leases (WorkerOptions.EffectivePrefetch at its defaults).
    private static readonly int DefaultPrefetch = new WorkerOptions().EffectivePrefetch;
    private readonly string _folder = TempFolder.Create();
    private string _databaseUrl = "";

    public void Dispose() => TempFolder.Delete(_folder);

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = _databaseUrl,
        ["PORT"] = "0",
        ["LOG_LEVEL"] = "warning",
        // Short leases so that the tasks the killed worker held are redelivered within seconds, not 30 s.
        ["CONVEYOR_WORKER__LEASE_DURATION"] = "00:00:03",
        ["CONVEYOR_WORKER__HEARTBEAT_INTERVAL"] = "00:00:01",
        ["CONVEYOR_SCHEDULER__REAPER_INTERVAL"] = "00:00:01",
    };

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Server_killed_with_SIGKILL_loses_no_acknowledged_task(string backend)
    {
        if (backend == "sqlite")
        {
            _databaseUrl = "sqlite:///" + Path.Combine(_folder, "crash.db");
            await RunAsync();
            return;
        }
        var schema = "crash_" + Guid.NewGuid().ToString("N");
        var url = PostgresServerTests.PostgresUrl;
        _databaseUrl = url + (url.Contains('?', StringComparison.Ordinal) ? "&" : "?") + "schema=" + schema;
        try
        {
            await RunAsync();
        }
        finally
        {
            await using var cleanup = new Conveyor.Postgres.PostgresBackend(new Conveyor.Postgres.PostgresBackendOptions { ConnectionString = url, Schema = schema });
            await cleanup.DropSchemaAsync(CancellationToken.None);
        }
    }

    private async Task RunAsync()
    {
        var acknowledged = new ConcurrentDictionary<Guid, bool>();

        // 1. Enqueue over HTTP from several keep-alive clients while the in-process worker runs them; kill -9 midway.
        DateTimeOffset killedAt;
        using (var server = await StartServerAsync())
        {
            using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromSeconds(10) };
            using var stop = new CancellationTokenSource();
            var clients = Enumerable.Range(0, Clients).Select(_ => EnqueueUntilAsync(http, acknowledged, KillAfterAcknowledged + 2_000, stop.Token)).ToArray();
            await WaitUntilAsync(() => acknowledged.Count >= KillAfterAcknowledged, TimeSpan.FromSeconds(60), "acknowledged enqueues");
            var beforeKill = await GetQueueAsync(http);
            Assert.True(beforeKill.Succeeded > 0, "the worker must be running tasks when the server is killed");
            killedAt = DateTimeOffset.UtcNow;
            server.Process.KillHard();
            await stop.CancelAsync();
            await Task.WhenAll(clients);
        }
        var acknowledgedBeforeKill = acknowledged.Count;
        Assert.True(acknowledgedBeforeKill >= KillAfterAcknowledged);

        // 2. Start again on the same data; enqueue the rest so that 10,000 were acknowledged in all.
        using (var server = await StartServerAsync())
        {
            using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromSeconds(10) };
            var clients = Enumerable.Range(0, Clients).Select(_ => EnqueueUntilAsync(http, acknowledged, TotalTasks, CancellationToken.None)).ToArray();
            await Task.WhenAll(clients);
            Assert.True(acknowledged.Count >= TotalTasks);

            // 3. Every acknowledged task ends succeeded; only those leased at the kill ran twice.
            await WaitUntilAsync(async () =>
            {
                var queue = await GetQueueAsync(http);
                return queue.Succeeded >= acknowledged.Count && queue.Pending == 0;
            }, TimeSpan.FromSeconds(90), "every task succeeded");

            var tasks = await ListAllTasksAsync(http);
            var missing = acknowledged.Keys.Where(id => !tasks.ContainsKey(id)).ToList();
            Assert.True(missing.Count == 0, $"{missing.Count} acknowledged tasks are missing, e.g. {missing.FirstOrDefault()}");
            var notSucceeded = acknowledged.Keys.Where(id => tasks[id].State != "succeeded").ToList();
            Assert.True(notSucceeded.Count == 0, $"{notSucceeded.Count} tasks did not succeed, e.g. {notSucceeded.FirstOrDefault()}: {(notSucceeded.Count > 0 ? tasks[notSucceeded[0]].State : "")}");

            var ranTwice = tasks.Values.Where(t => t.Attempts > 1).ToList();
            Assert.All(tasks.Values, t => Assert.InRange(t.Attempts, 1, 2));
            // Only a task that was leased (running) when the process died may run again: it must have
            // entered running before the kill, and been redelivered after it.
            Assert.All(ranTwice, t => Assert.True(t.FirstRunningAt <= killedAt.AddSeconds(1), $"task {t.Id} first ran at {t.FirstRunningAt:O}, after the kill at {killedAt:O}"));
            Assert.True(ranTwice.Count <= DefaultPrefetch, $"{ranTwice.Count} tasks ran twice; at most the worker's {DefaultPrefetch} leases may");
            Console.WriteLine($"SIGKILL test ({_databaseUrl.Split(':')[0]}): {acknowledgedBeforeKill} acknowledged before the kill, {acknowledged.Count} in all, {tasks.Count} stored, {ranTwice.Count} ran twice");
        }
    }

    private sealed record ServerProcess(ConveyorProcess Process, Uri Url) : IDisposable
    {
        public void Dispose() => Process.Dispose();
    }

    private async Task<ServerProcess> StartServerAsync()
    {
        var process = ConveyorProcess.Start(_folder, Environment, "server");
        var line = await process.WaitForLineAsync(l => l.Contains("Conveyor serving http://", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var url = line[line.IndexOf("http://", StringComparison.Ordinal)..].Split(' ')[0].TrimEnd();
        return new ServerProcess(process, new Uri(url));
    }

    private static async Task EnqueueUntilAsync(HttpClient http, ConcurrentDictionary<Guid, bool> acknowledged, int target, CancellationToken stop)
    {
        while (acknowledged.Count < target && !stop.IsCancellationRequested)
        {
            try
            {
                using var content = new StringContent("""{"task":"conveyor.noop","args":{}}""", Encoding.UTF8, "application/json");
                using var response = await http.PostAsync("/api/v1/tasks", content, stop);
                if (response.StatusCode != HttpStatusCode.Created)
                {
                    Assert.Fail($"enqueue answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(stop)}");
                }
                var body = await response.Content.ReadFromJsonAsync<JsonElement>(stop);
                // Counted only once the server answered 201: that is the acknowledgement.
                acknowledged[body.GetProperty("id").GetGuid()] = true;
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
            {
                // The server was killed under this request: it was never acknowledged.
                return;
            }
        }
    }

    private sealed record QueueCounts(long Succeeded, long Pending);

    private static async Task<QueueCounts> GetQueueAsync(HttpClient http)
    {
        var queues = await http.GetFromJsonAsync<JsonElement>("/api/v1/queues");
        var queue = queues.EnumerateArray().Single(q => q.GetProperty("name").GetString() == "default");
        long Count(string name) => queue.TryGetProperty(name, out var value) ? value.GetInt64() : 0;
        return new QueueCounts(Count("succeeded"), Count("queued") + Count("running") + Count("scheduled") + Count("retrying"));
    }

    private sealed record StoredTask(Guid Id, string State, int Attempts, DateTimeOffset FirstRunningAt);

    private static async Task<Dictionary<Guid, StoredTask>> ListAllTasksAsync(HttpClient http)
    {
        var tasks = new Dictionary<Guid, StoredTask>();
        string? cursor = null;
        do
        {
            var page = await http.GetFromJsonAsync<JsonElement>("/api/v1/tasks?limit=1000" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)));
            foreach (var item in page.GetProperty("items").EnumerateArray())
            {
                var id = item.GetProperty("id").GetGuid();
                var firstRunning = item.GetProperty("transitions").EnumerateArray()
                    .First(t => t.GetProperty("state").GetString() == "running").GetProperty("at").GetDateTimeOffset();
                tasks[id] = new StoredTask(id, item.GetProperty("state").GetString()!, item.GetProperty("attempts").GetInt32(), firstRunning);
            }
            cursor = page.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
        }
        while (cursor is not null);
        return tasks;
    }

    private static Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what) =>
        WaitUntilAsync(() => Task.FromResult(condition()), timeout, what);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out after {timeout} waiting for {what}");
            await Task.Delay(50);
        }
    }
}
