using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Server.Configuration;
using Conveyor.TestBackends;
using StackExchange.Redis;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>
/// Process-level, through the backend's notifier: <c>conveyor server --no-worker</c> and <c>conveyor worker</c> as separate
/// OS processes on one store — a SQLite file, a fresh schema on the test PostgreSQL server (CONVEYOR_TEST_POSTGRES), a
/// fresh key prefix on the test Redis server (CONVEYOR_TEST_REDIS). The server's event stream shows the worker's events,
/// and the worker starts each task as it is enqueued even with its fallback poll set to a minute.
/// </summary>
public sealed class CrossProcessEventTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    [InlineData("redis")]
    public Task A_server_with_no_worker_streams_the_events_of_a_worker_in_another_process(string backend) =>
        WithBackendEnvironmentAsync(backend, _folder, "cvevents", async store =>
        {
            using var server = await ServerProcess.StartAsync(_folder, Environment(store), "--no-worker");
            using var worker = ConveyorProcess.Start(_folder, Environment(store), "worker");
            var workerId = await WorkerIdAsync(worker);
            using var http = server.CreateClient();
            await using var stream = await SseClient.OpenAsync(server.Url);

            // The worker hears that someone watches (at once, and again every few seconds): until then its events are its own.
            // Tasks are enqueued until one shows a worker's event, so that the one measured below cannot race the first notice.
            var first = Stopwatch.StartNew();
            while (!stream.Messages.Any(m => m.Type == "succeeded"))
            {
                Assert.True(first.Elapsed < Deadline, $"no event of the worker process reached the server's stream in {Deadline}: {Describe(stream, server, worker)}");
                var warmup = await EnqueueAsync(http);
                await WaitUntilAsync(async () => stream.EventsOf(warmup).Any(e => e.Type == "succeeded") || await StateAsync(http, warmup) == "succeeded",
                    Deadline, $"warm-up task {warmup} to succeed");
            }

            var id = await EnqueueAsync(http);
            await stream.WaitUntilAsync(s => s.EventsOf(id).Any(e => e.Type == "succeeded"), Deadline, $"task {id}'s succeeded event from the worker process");

            stream.AssertNoProtocolErrors();
            // Each once. Arrival order across processes is not promised (docs/http-api.md): the server's own enqueued
            // event can reach its stream after the worker's started one, when the worker fetched the task between the
            // server's commit and its publish. The worker's two arrive in order (one sender, one channel).
            await stream.WaitUntilAsync(s => s.EventsOf(id).Any(e => e.Type == "enqueued"), Deadline, $"task {id}'s enqueued event");
            var events = stream.EventsOf(id).OrderBy(e => e.Type == "enqueued" ? 0 : 1).ToList();
            Assert.True(events.Select(e => e.Type).SequenceEqual(["enqueued", "started", "succeeded"]),
                $"task {id}'s events: {string.Join(" | ", stream.EventsOf(id))}; the stream: {string.Join(" | ", stream.Messages.TakeLast(10))}");
            // Enqueued by the server; run by the worker process, which is not the server.
            var serverId = events[0].Get("origin");
            Assert.False(string.IsNullOrEmpty(serverId));
            Assert.NotEqual(workerId, serverId);
            Assert.Equal(workerId, events[1].Get("workerId"));
            Assert.Equal(workerId, events[2].Get("workerId"));
            Assert.Equal(workerId, events[1].Get("origin"));
            Assert.Equal(workerId, events[2].Get("origin"));
            var stored = await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}");
            Assert.Equal("succeeded", stored.GetProperty("state").GetString());

            // A workflow's end is written by the worker's completion, in the worker process: that process reads it and
            // announces it on the notifier's workflow channel.
            using var created = await http.PostAsync("/api/v1/workflows", new StringContent(
                """{"name": "cross", "steps": [{"id": "a", "task": "conveyor.noop"}, {"id": "b", "task": "conveyor.noop", "after": ["a"]}]}""",
                System.Text.Encoding.UTF8, "application/json"));
            var createdBody = await created.Content.ReadAsStringAsync();
            Assert.True(created.StatusCode == System.Net.HttpStatusCode.Created, createdBody);
            var workflowId = JsonDocument.Parse(createdBody).RootElement.GetProperty("id").GetString();
            await stream.WaitForAsync(e => e.Event == "workflow" && e.Get("workflowId") == workflowId && e.Type == "succeeded", Deadline,
                $"workflow {workflowId}'s succeeded event from the worker process");
            var workflowEvents = stream.Messages.Where(e => e.Event == "workflow" && e.Get("workflowId") == workflowId).ToList();
            Assert.True(workflowEvents.Select(e => e.Type).SequenceEqual(["created", "succeeded"]), string.Join(" | ", workflowEvents));
            Assert.Equal(serverId, workflowEvents[0].Get("origin"));
            Assert.Equal(workerId, workflowEvents[1].Get("origin"));
            Assert.Equal("cross", workflowEvents[1].Get("name"));
        });

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    [InlineData("redis")]
    public Task A_worker_in_another_process_starts_each_task_within_2_s_with_its_fallback_poll_at_a_minute(string backend) =>
        WithBackendEnvironmentAsync(backend, _folder, "cvevents", async store =>
        {
            const int tasks = 20;
            var limit = TimeSpan.FromSeconds(2);
            using var server = await ServerProcess.StartAsync(_folder, Environment(store), "--no-worker");
            // Without a notification crossing the processes, the worker would find a task only at its next poll, a minute on.
            var workerEnvironment = Environment(store);
            workerEnvironment["CONVEYOR_WORKER__FETCH_WAIT"] = "00:01:00";
            using var worker = ConveyorProcess.Start(_folder, workerEnvironment, "worker");
            await WorkerIdAsync(worker);
            using var http = server.CreateClient();

            // The worker's first poll finds nothing, and the long wait begins.
            var pending = new List<(Guid Id, TimeSpan StartedAfter)>();
            for (var i = 0; i < tasks; i++)
            {
                var id = await EnqueueAsync(http);
                var clock = Stopwatch.StartNew();
                JsonElement task = default;
                await WaitUntilAsync(async () =>
                {
                    task = await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}");
                    return task.GetProperty("state").GetString() == "succeeded" || clock.Elapsed > limit * 2;
                }, Deadline, $"task {i}");
                Assert.True(task.GetProperty("state").GetString() == "succeeded",
                    $"task {i} ({id}) was not done {clock.Elapsed.TotalSeconds:0.0} s after its enqueue: {task}. {Describe(null, server, worker)}");
                var createdAt = task.GetProperty("createdAt").GetDateTimeOffset();
                var startedAt = task.GetProperty("startedAt").GetDateTimeOffset();
                pending.Add((id, startedAt - createdAt));
                // A pause, so that the worker is back in its wait when the next task comes.
                await Task.Delay(TimeSpan.FromMilliseconds(150));
            }
            var slow = pending.Where(p => p.StartedAfter > limit).ToList();
            Assert.True(slow.Count == 0, $"{slow.Count} of {tasks} tasks started more than {limit} after their enqueue: "
                + string.Join(", ", slow.Select(s => $"{s.Id} after {s.StartedAfter.TotalMilliseconds:0} ms")));
            Console.WriteLine($"Cross-process wake-up ({backend}): enqueue to start, max {pending.Max(p => p.StartedAfter).TotalMilliseconds:0} ms, "
                + $"median {pending.Select(p => p.StartedAfter).Order().ElementAt(tasks / 2).TotalMilliseconds:0} ms");
        });

    private static Dictionary<string, string> Environment(IReadOnlyDictionary<string, string> store)
    {
        var environment = new Dictionary<string, string>(store) { ["LOG_LEVEL"] = "warning", ["PORT"] = "0" };
        return environment;
    }

    private static async Task<string> WorkerIdAsync(ConveyorProcess worker)
    {
        var line = await worker.WaitForLineAsync(l => l.StartsWith("Conveyor worker ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        return line["Conveyor worker ".Length..].Split(' ')[0];
    }

    private static async Task<Guid> EnqueueAsync(HttpClient http)
    {
        using var response = await http.PostAsJsonAsync("/api/v1/tasks", new { task = "conveyor.noop", args = new { } });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"{(int)response.StatusCode}: {body}");
        using var document = JsonDocument.Parse(body);
        return document.RootElement.GetProperty("id").GetGuid();
    }

    private static async Task<string?> StateAsync(HttpClient http, Guid id) =>
        (await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}")).GetProperty("state").GetString();

    private static string Describe(SseClient? stream, ServerProcess server, ConveyorProcess worker) =>
        (stream is null ? "" : $"stream read {stream.Messages.Count} events ({string.Join(" | ", stream.Messages.TakeLast(6))}). ")
        + $"Server log: {LogSummary(server.Process.Output + server.Process.Error)}; worker log: {LogSummary(worker.Output + worker.Error)}; worker output: {worker.Output} {worker.Error}";
}
