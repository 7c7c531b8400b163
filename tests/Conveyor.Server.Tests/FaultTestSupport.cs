using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.TestBackends;

namespace Conveyor.Server.Tests;

/// <summary>A <c>conveyor server</c> process and the address it serves on.</summary>
public sealed record ServerProcess(ConveyorProcess Process, Uri Url) : IDisposable
{
    /// <summary>Starts <c>conveyor server</c> (with <paramref name="args"/>) and waits for its "serving" line.</summary>
    public static async Task<ServerProcess> StartAsync(string folder, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var process = ConveyorProcess.Start(folder, environment, ["server", .. args]);
        try
        {
            // http://, or https:// when the server has a certificate.
            var line = await process.WaitForLineAsync(l => l.Contains("Conveyor serving http", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            const string banner = "Conveyor serving ";
            return new ServerProcess(process, new Uri(line[(line.IndexOf(banner, StringComparison.Ordinal) + banner.Length)..].Split(' ')[0].TrimEnd()));
        }
        catch
        {
            process.Dispose();
            throw;
        }
    }

    public HttpClient CreateClient(TimeSpan? timeout = null) => new() { BaseAddress = Url, Timeout = timeout ?? TimeSpan.FromSeconds(10) };

    public void Dispose() => Process.Dispose();
}

/// <summary>What the process-level fault tests share: waiting on a condition with a deadline, the API's counts and
/// task list, enqueueing over HTTP, <c>/health/ready</c>, the store a test runs on, and the service scripts.</summary>
internal static class FaultTests
{
    /// <summary>The environment of a fault test's <c>conveyor</c> process: <paramref name="store"/>'s variables, warnings
    /// only, and short leases, heartbeats, reaper interval and leader lease, so that the tasks a killed process held
    /// are redelivered within seconds, not 30 s.</summary>
    public static Dictionary<string, string> ProcessEnvironment(IReadOnlyDictionary<string, string> store, string lease = "00:00:03")
    {
        var environment = new Dictionary<string, string>(store)
        {
            ["LOG_LEVEL"] = "warning",
            ["CONVEYOR_WORKER__LEASE_DURATION"] = lease,
            ["CONVEYOR_WORKER__HEARTBEAT_INTERVAL"] = "00:00:01",
            ["CONVEYOR_SCHEDULER__REAPER_INTERVAL"] = "00:00:01",
            ["CONVEYOR_SCHEDULER__LEADER_LEASE"] = lease,
        };
        return environment;
    }

    public static Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what) =>
        WaitUntilAsync(() => Task.FromResult(condition()), timeout, what);

    public static Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string> what) =>
        WaitUntilAsync(() => Task.FromResult(condition()), timeout, what);

    public static Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what) =>
        WaitUntilAsync(condition, timeout, () => what);

    /// <summary>Polls <paramref name="condition"/> every 100 ms; fails after <paramref name="timeout"/>, saying what it waited for (read at the end).</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out after {timeout} waiting for {what()}");
            await Task.Delay(100);
        }
    }

    public sealed record QueueCounts(long Succeeded, long Pending, long Running, long Dead = 0);

    /// <summary>The default queue's succeeded tasks, those not finished yet (queued, running, scheduled, retrying) and those running.
    /// Exact counts: by default a SQL store counts succeeded tasks up to 50,000 only (a lower bound past it), and a fault
    /// test that enqueues as long as an outage lasts can acknowledge more (CI of 3729759: 52,200, "50,000 succeeded").</summary>
    public static async Task<QueueCounts> GetDefaultQueueAsync(HttpClient http)
    {
        var queues = await http.GetFromJsonAsync<JsonElement>("/api/v1/queues?exact=true");
        var queue = queues.EnumerateArray().SingleOrDefault(q => q.GetProperty("name").GetString() == "default");
        if (queue.ValueKind != JsonValueKind.Object)
        {
            return new QueueCounts(0, 0, 0);
        }
        long Count(string name) => queue.TryGetProperty(name, out var value) ? value.GetInt64() : 0;
        return new QueueCounts(Count("succeeded"), Count("queued") + Count("running") + Count("scheduled") + Count("retrying"), Count("running"), Count("dead"));
    }

    /// <summary>Waits until the default queue has at least <paramref name="acknowledged"/> succeeded tasks and none pending.</summary>
    public static Task WaitForAllSucceededAsync(HttpClient http, Func<int> acknowledged, TimeSpan timeout)
    {
        // The last counts seen go into the failure, so that a timeout says whether tasks were stuck queued, held or dead.
        var last = "no answer";
        return WaitUntilAsync(async () =>
        {
            try
            {
                var counts = await GetDefaultQueueAsync(http);
                last = counts.ToString();
                // Dead tasks, none left to run and too few succeeded: no wait can change that.
                Assert.False(counts.Dead > 0 && counts.Pending == 0 && counts.Succeeded < acknowledged(),
                    $"{counts.Dead} tasks dead, none left to run, and {counts.Succeeded} of {acknowledged()} succeeded: {counts}");
                return counts.Succeeded >= acknowledged() && counts.Pending == 0;
            }
            catch (HttpRequestException ex)
            {
                last = ex.Message;
                return false;
            }
        }, timeout, () => $"every task to succeed ({acknowledged()} acknowledged; last seen: {last})");
    }

    /// <summary>A stored task as the kill tests read it: <paramref name="Errors"/> counts its failed attempts (for tasks whose
    /// handler always succeeds, its interrupted ones), <paramref name="WorkerId"/> is the worker holding it while it runs.</summary>
    public sealed record StoredTask(Guid Id, string State, int Attempts, DateTimeOffset? FirstRunningAt, int Errors = 0, string? WorkerId = null);

    /// <summary>Every stored task (in <paramref name="state"/>, an API state name, when given), read page by page through the API.</summary>
    public static async Task<Dictionary<Guid, StoredTask>> ListAllTasksAsync(HttpClient http, string? state = null)
    {
        var tasks = new Dictionary<Guid, StoredTask>();
        string? cursor = null;
        do
        {
            var page = await http.GetFromJsonAsync<JsonElement>("/api/v1/tasks?limit=1000" + (state is null ? "" : "&state=" + state)
                + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)));
            foreach (var item in page.GetProperty("items").EnumerateArray())
            {
                var id = item.GetProperty("id").GetGuid();
                var firstRunning = item.GetProperty("transitions").EnumerateArray()
                    .Where(t => t.GetProperty("state").GetString() == "running")
                    .Select(t => (DateTimeOffset?)t.GetProperty("at").GetDateTimeOffset())
                    .FirstOrDefault();
                var workerId = item.TryGetProperty("workerId", out var worker) && worker.ValueKind == JsonValueKind.String ? worker.GetString() : null;
                tasks[id] = new StoredTask(id, item.GetProperty("state").GetString()!, item.GetProperty("attempts").GetInt32(), firstRunning,
                    item.GetProperty("errors").GetArrayLength(), workerId);
            }
            cursor = page.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
        }
        while (cursor is not null);
        return tasks;
    }

    /// <summary>Fails unless every acknowledged task is stored and succeeded.</summary>
    public static void AssertEverySucceeded(IEnumerable<Guid> acknowledged, Dictionary<Guid, StoredTask> tasks) =>
        AssertEverySucceeded(acknowledged, tasks, t => t.State == "succeeded", t => t.State);

    /// <summary>Fails unless every acknowledged task is in <paramref name="tasks"/> and <paramref name="succeeded"/>.</summary>
    public static void AssertEverySucceeded<T>(IEnumerable<Guid> acknowledged, IReadOnlyDictionary<Guid, T> tasks, Func<T, bool> succeeded, Func<T, string> state)
    {
        var missing = acknowledged.Where(id => !tasks.ContainsKey(id)).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} acknowledged tasks are missing, e.g. {missing.FirstOrDefault()}");
        var notSucceeded = acknowledged.Where(id => !succeeded(tasks[id])).ToList();
        Assert.True(notSucceeded.Count == 0,
            $"{notSucceeded.Count} tasks did not succeed, e.g. {notSucceeded.FirstOrDefault()}: {(notSucceeded.Count > 0 ? state(tasks[notSucceeded[0]]) : "")}");
    }

    /// <summary>
    /// Enqueues no-op tasks (one per request, or <paramref name="batchSize"/> per batch request) until
    /// <paramref name="target"/> were acknowledged (answered 201) or <paramref name="stop"/> is cancelled, waiting
    /// <paramref name="pause"/> between requests, and returns how many requests were refused. Without
    /// <paramref name="refusalsExpected"/> any other answer fails the test and a broken connection (the server was
    /// killed) ends the loop; with it, refusals and broken requests (a backend outage) are counted and tried again.
    /// <paramref name="task"/> is the JSON of one task (a no-op by default).
    /// </summary>
    public static async Task<int> EnqueueUntilAsync(HttpClient http, ICollection<Guid> acknowledged, int target, bool refusalsExpected, CancellationToken stop,
        int batchSize = 1, TimeSpan pause = default, string task = """{"task":"conveyor.noop","args":{}}""")
    {
        var refused = 0;
        var batch = "{\"tasks\":[" + string.Join(',', Enumerable.Repeat(task, batchSize)) + "]}";
        while (Count(acknowledged) < target && !stop.IsCancellationRequested)
        {
            try
            {
                using var content = new StringContent(batchSize == 1 ? task : batch, Encoding.UTF8, "application/json");
                using var response = await http.PostAsync(batchSize == 1 ? "/api/v1/tasks" : "/api/v1/tasks/batch", content, stop);
                if (!response.IsSuccessStatusCode)
                {
                    Assert.True(refusalsExpected, $"enqueue answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(stop)}");
                    refused++;
                    await Task.Delay(100, stop);
                    continue;
                }
                var body = await response.Content.ReadFromJsonAsync<JsonElement>(stop);
                // Counted only once the server answered: that is the acknowledgement.
                lock (acknowledged)
                {
                    if (batchSize == 1)
                    {
                        acknowledged.Add(body.GetProperty("id").GetGuid());
                    }
                    else
                    {
                        foreach (var id in body.GetProperty("ids").EnumerateArray())
                        {
                            acknowledged.Add(id.GetGuid());
                        }
                    }
                }
                if (pause > TimeSpan.Zero)
                {
                    await Task.Delay(pause, stop);
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
            {
                // Never acknowledged. Killed server: stop here; outage: try again unless told to stop.
                if (!refusalsExpected || stop.IsCancellationRequested)
                {
                    return refused;
                }
                refused++;
            }
        }
        return refused;
    }

    public static int Count(ICollection<Guid> acknowledged)
    {
        lock (acknowledged)
        {
            return acknowledged.Count;
        }
    }

    /// <summary>The warnings and errors in a process's log, counted by category and event id ("warn Conveyor.WorkerService[3] ×4").</summary>
    public static string LogSummary(string log)
    {
        var counts = log.Split('\n')
            .Select(line => System.Text.RegularExpressions.Regex.Match(line, @"\b(warn|fail|crit): (\S+)"))
            .Where(m => m.Success)
            .GroupBy(m => m.Groups[1].Value + " " + m.Groups[2].Value)
            .Select(g => $"{g.Key} ×{g.Count()}");
        return string.Join(", ", counts) is { Length: > 0 } text ? text : "none";
    }

    /// <summary>Tasks in the <c>running</c> state, read straight from the store with <c>conveyor info --json</c> (no
    /// server needed): right after a worker process is killed, the leases that died with it.</summary>
    public static async Task<long> CountRunningInStoreAsync(string folder, string databaseUrl)
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(folder, new Dictionary<string, string> { ["DATABASE_URL"] = databaseUrl }, "info", "--json");
        Assert.True(exitCode == 0, error);
        using var document = JsonDocument.Parse(output);
        return document.RootElement.GetProperty("totals").TryGetProperty("running", out var running) ? running.GetInt64() : 0;
    }

    /// <summary>GET /health/ready: its status code and body.</summary>
    public static async Task<(HttpStatusCode Status, string Body)> GetReadyAsync(HttpClient http)
    {
        using var response = await http.GetAsync("/health/ready");
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Runs <paramref name="test"/> with a DATABASE_URL for <paramref name="store"/>: a SQLite file in
    /// <paramref name="folder"/>, or a schema of its own on the test PostgreSQL server (CONVEYOR_TEST_POSTGRES), dropped afterwards.</summary>
    public static Task WithStoreAsync(string store, string folder, Func<string, Task> test) =>
        TestServers.WithFreshAsync(store, folder, location => test(((SqlDatabase)location).Url), "fault");

    /// <summary>Runs <paramref name="test"/> with the environment variables of a fresh backend of <paramref name="kind"/>
    /// (<see cref="TestServers.Fresh"/>: a SQLite file in <paramref name="folder"/>, a PostgreSQL schema, a Redis key
    /// prefix, or RabbitMQ objects under a prefix beside either store), its names starting with <paramref name="stem"/>;
    /// removed afterwards.</summary>
    public static Task WithBackendEnvironmentAsync(string kind, string folder, string stem, Func<Dictionary<string, string>, Task> test) =>
        TestServers.WithFreshAsync(kind, folder, location => test(new Dictionary<string, string>(location.ToEnvironment())), stem);

    /// <summary>Runs <c>scripts/services/{service}.sh {command}</c> with extra environment (a private data folder)
    /// and returns its standard output; fails when it fails.</summary>
    public static Task<string> RunServiceScriptAsync(string service, string command, IReadOnlyDictionary<string, string> environment) =>
        Conveyor.TestBackends.ServiceScripts.RunAsync(service, [command], environment);
}
