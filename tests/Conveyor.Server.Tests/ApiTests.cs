using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.AspNetCore.Contracts;

namespace Conveyor.Server.Tests;

public sealed class ApiTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    private TestServer Server => fixture.Server;

    [Fact]
    public async Task Enqueued_task_runs_to_succeeded_with_its_history()
    {
        using var response = await Server.Client.PostAsJsonAsync("/api/v1/tasks", new { task = "conveyor.noop", args = new { n = 1, tags = new[] { "a" } } });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = await TestServer.ReadJsonAsync(response);
        var id = created.GetProperty("id").GetGuid();
        Assert.Equal($"/api/v1/tasks/{id}", response.Headers.Location?.OriginalString);
        Assert.Contains(created.GetProperty("state").GetString(), new[] { "queued", "running", "succeeded" });
        Assert.Equal("conveyor.noop", created.GetProperty("task").GetString());

        var task = await Server.WaitForStateAsync(id, "succeeded");
        Assert.Equal("default", task.GetProperty("queue").GetString());
        Assert.Equal(1, task.GetProperty("args").GetProperty("n").GetInt32());
        Assert.Equal("a", task.GetProperty("args").GetProperty("tags")[0].GetString());
        Assert.Equal(1, task.GetProperty("attempts").GetInt32());
        Assert.Equal(5, task.GetProperty("maxAttempts").GetInt32());
        Assert.Equal(JsonValueKind.Null, task.GetProperty("error").ValueKind);
        Assert.Empty(task.GetProperty("errors").EnumerateArray());
        Assert.NotEqual(JsonValueKind.Null, task.GetProperty("startedAt").ValueKind);
        Assert.NotEqual(JsonValueKind.Null, task.GetProperty("finishedAt").ValueKind);
        Assert.Equal(["queued", "running", "succeeded"], task.GetProperty("transitions").EnumerateArray().Select(t => t.GetProperty("state").GetString()));
    }

    [Fact]
    public async Task Same_idempotency_key_answers_200_with_the_first_task()
    {
        var body = new { task = "conveyor.noop", queue = "idempotent", idempotencyKey = "order-42" };
        using var first = await Server.Client.PostAsJsonAsync("/api/v1/tasks", body);
        var before = await Server.CountTasksAsync();

        using var second = await Server.Client.PostAsJsonAsync("/api/v1/tasks", body);

        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        var firstId = (await TestServer.ReadJsonAsync(first)).GetProperty("id").GetGuid();
        var existing = await TestServer.ReadJsonAsync(second);
        Assert.Equal(firstId, existing.GetProperty("id").GetGuid());
        Assert.Equal("order-42", existing.GetProperty("idempotencyKey").GetString());
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Fact]
    public async Task Same_unique_key_answers_200_with_the_waiting_task_and_says_which_key_matched()
    {
        // Delayed, so the first task is still waiting when the second enqueue comes.
        var key = "sync-" + Guid.NewGuid().ToString("N");
        var body = new { task = "conveyor.noop", uniqueKey = key, delay = "PT1H" };
        using var first = await Server.Client.PostAsJsonAsync("/api/v1/tasks", body);
        using var second = await Server.Client.PostAsJsonAsync("/api/v1/tasks", body);
        using var idempotent = await Server.Client.PostAsJsonAsync("/api/v1/tasks", new { task = "conveyor.noop", idempotencyKey = key });
        using var again = await Server.Client.PostAsJsonAsync("/api/v1/tasks", new { task = "conveyor.noop", idempotencyKey = key });
        using var bad = await Server.Client.PostAsJsonAsync("/api/v1/tasks", new { task = "conveyor.noop", uniqueFor = "PT1M" });

        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal("uniqueKey", second.Headers.GetValues("Conveyor-Deduplicated").Single());
        Assert.Equal((await TestServer.ReadJsonAsync(first)).GetProperty("id").GetGuid(), (await TestServer.ReadJsonAsync(second)).GetProperty("id").GetGuid());
        Assert.Equal("scheduled", (await TestServer.ReadJsonAsync(second)).GetProperty("state").GetString());
        Assert.Equal("idempotencyKey", again.Headers.GetValues("Conveyor-Deduplicated").Single());
        Assert.Equal(HttpStatusCode.UnprocessableEntity, bad.StatusCode);
        Assert.Contains("needs a uniqueKey", (await TestServer.ReadJsonAsync(bad)).GetProperty("errors").GetProperty("uniqueFor")[0].GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Delay_and_options_are_stored_as_given()
    {
        var id = await Server.EnqueueAsync(new
        {
            task = "conveyor.noop",
            queue = "later",
            priority = 7,
            delay = "PT1H",
            maxAttempts = 3,
            timeout = 90,
            headers = new Dictionary<string, string> { ["traceparent"] = "00-abc-def-01" },
        });

        var task = await Server.GetTaskAsync(id);
        Assert.Equal("scheduled", task.GetProperty("state").GetString());
        Assert.Equal("later", task.GetProperty("queue").GetString());
        Assert.Equal(7, task.GetProperty("priority").GetInt32());
        Assert.Equal(3, task.GetProperty("maxAttempts").GetInt32());
        Assert.Equal("00-abc-def-01", task.GetProperty("headers").GetProperty("traceparent").GetString());
        var notBefore = task.GetProperty("notBefore").GetDateTimeOffset();
        Assert.InRange(notBefore - task.GetProperty("createdAt").GetDateTimeOffset(), TimeSpan.FromMinutes(59), TimeSpan.FromMinutes(61));
    }

    [Fact]
    public async Task Eta_in_rfc3339_schedules_the_task_at_that_time()
    {
        var id = await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "later", eta = "2099-06-01T12:30:00+02:00" });

        var task = await Server.GetTaskAsync(id);
        Assert.Equal("scheduled", task.GetProperty("state").GetString());
        Assert.Equal(new DateTimeOffset(2099, 6, 1, 10, 30, 0, TimeSpan.Zero), task.GetProperty("notBefore").GetDateTimeOffset());
    }

    [Fact]
    public async Task Batch_enqueues_every_task_and_returns_their_ids_in_order()
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks/batch", """
            {"tasks": [{"task": "conveyor.noop", "args": {"i": 0}}, {"task": "conveyor.noop", "args": {"i": 1}}, {"task": "conveyor.noop", "args": {"i": 2}}]}
            """);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var ids = (await TestServer.ReadJsonAsync(response)).GetProperty("ids").EnumerateArray().Select(e => e.GetGuid()).ToList();
        Assert.Equal(3, ids.Distinct().Count());
        for (var i = 0; i < ids.Count; i++)
        {
            var task = await Server.WaitForStateAsync(ids[i], "succeeded");
            Assert.Equal(i, task.GetProperty("args").GetProperty("i").GetInt32());
        }
    }

    [Fact]
    public async Task List_pages_newest_first_with_a_cursor()
    {
        // No worker consumes this queue, so the tasks stay queued while the test pages through them.
        var enqueued = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            enqueued.Add(await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "listing" }));
        }

        var seen = new List<Guid>();
        var pages = 0;
        string? cursor = null;
        do
        {
            var page = await Server.Client.GetFromJsonAsync<JsonElement>(
                $"/api/v1/tasks?queue=listing&state=queued&task=conveyor.noop&limit=2{(cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor))}");
            var items = page.GetProperty("items").EnumerateArray().ToList();
            Assert.InRange(items.Count, 1, 2);
            seen.AddRange(items.Select(t => t.GetProperty("id").GetGuid()));
            cursor = page.GetProperty("nextCursor").GetString();
            pages++;
        }
        while (cursor is not null && pages < 10);

        Assert.Equal(3, pages);
        Assert.Equal(Enumerable.Reverse(enqueued), seen);
    }

    [Fact]
    public async Task List_filters_by_state()
    {
        var id = await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "filtered", delay = "PT1H" });

        var scheduled = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/tasks?queue=filtered&state=scheduled");
        var queued = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/tasks?queue=filtered&state=queued");

        Assert.Equal(id, Assert.Single(scheduled.GetProperty("items").EnumerateArray()).GetProperty("id").GetGuid());
        Assert.Empty(queued.GetProperty("items").EnumerateArray());
    }

    [Fact]
    public async Task Cancelled_task_can_be_retried_and_then_runs()
    {
        var id = await Server.EnqueueAsync(new { task = "conveyor.noop", delay = "PT1H" });

        using var cancel = await Server.Client.PostAsync($"/api/v1/tasks/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        Assert.Equal("cancelled", (await TestServer.ReadJsonAsync(cancel)).GetProperty("state").GetString());

        using var cancelAgain = await Server.Client.PostAsync($"/api/v1/tasks/{id}/cancel", null);
        await ApiValidationTests.AssertProblemAsync(cancelAgain, HttpStatusCode.Conflict);

        using var retry = await Server.Client.PostAsync($"/api/v1/tasks/{id}/retry", null);
        Assert.Equal(HttpStatusCode.OK, retry.StatusCode);
        Assert.Contains((await TestServer.ReadJsonAsync(retry)).GetProperty("state").GetString(), new[] { "queued", "running", "succeeded" });

        var task = await Server.WaitForStateAsync(id, "succeeded");
        Assert.Equal(["scheduled", "cancelled", "queued", "running", "succeeded"],
            task.GetProperty("transitions").EnumerateArray().Select(t => t.GetProperty("state").GetString()));
    }

    [Fact]
    public async Task Retrying_a_succeeded_task_is_409()
    {
        var id = await Server.EnqueueAsync(new { task = "conveyor.noop" });
        await Server.WaitForStateAsync(id, "succeeded");

        using var retry = await Server.Client.PostAsync($"/api/v1/tasks/{id}/retry", null);

        var problem = await ApiValidationTests.AssertProblemAsync(retry, HttpStatusCode.Conflict);
        Assert.Contains("succeeded", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Paused_queue_keeps_its_tasks_until_resumed()
    {
        using var pause = await Server.Client.PostAsync("/api/v1/queues/pausable/pause", null);
        Assert.Equal(HttpStatusCode.OK, pause.StatusCode);
        Assert.True((await TestServer.ReadJsonAsync(pause)).GetProperty("paused").GetBoolean());

        var held = await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "pausable" });
        // The worker consumes both queues; once a task enqueued after the held one has run, the held one was passed over.
        var probe = await Server.EnqueueAsync(new { task = "conveyor.noop" });
        await Server.WaitForStateAsync(probe, "succeeded");
        Assert.Equal("queued", (await Server.GetTaskAsync(held)).GetProperty("state").GetString());
        var queues = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/queues");
        var pausable = queues.EnumerateArray().Single(q => q.GetProperty("name").GetString() == "pausable");
        Assert.True(pausable.GetProperty("paused").GetBoolean());
        Assert.Equal(1, pausable.GetProperty("queued").GetInt64());

        using var resume = await Server.Client.PostAsync("/api/v1/queues/pausable/resume", null);
        Assert.Equal(HttpStatusCode.OK, resume.StatusCode);
        Assert.False((await TestServer.ReadJsonAsync(resume)).GetProperty("paused").GetBoolean());
        await Server.WaitForStateAsync(held, "succeeded");
    }

    [Fact]
    public async Task Queues_list_counts_every_state()
    {
        await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "counted" });
        await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "counted", delay = "PT1H" });

        var queues = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/queues");

        var counted = queues.EnumerateArray().Single(q => q.GetProperty("name").GetString() == "counted");
        Assert.Equal(
            ["name", "queued", "scheduled", "running", "succeeded", "retrying", "dead", "cancelled", "expired", "paused"],
            counted.EnumerateObject().Select(p => p.Name));
        Assert.Equal(1, counted.GetProperty("queued").GetInt64());
        Assert.Equal(1, counted.GetProperty("scheduled").GetInt64());
    }

    [Fact]
    public async Task Workers_lists_this_servers_worker()
    {
        var status = Server.Service<WorkerStatus>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        JsonElement worker;
        while (true)
        {
            var workers = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/workers");
            worker = workers.EnumerateArray().FirstOrDefault(w => w.GetProperty("id").GetString() == status.WorkerId);
            if (worker.ValueKind == JsonValueKind.Object || DateTime.UtcNow > deadline)
            {
                break;
            }
            await Task.Delay(25);
        }

        Assert.Equal(JsonValueKind.Object, worker.ValueKind);
        Assert.Equal(["default", "pausable"], worker.GetProperty("queues").EnumerateArray().Select(q => q.GetString()));
        Assert.Equal(16, worker.GetProperty("concurrency").GetInt32());
        Assert.Equal(Environment.ProcessId, worker.GetProperty("processId").GetInt32());
        Assert.True(worker.GetProperty("alive").GetBoolean());
        Assert.Contains("conveyor.noop", worker.GetProperty("tasks").EnumerateArray().Select(t => t.GetString()));
        Assert.False(string.IsNullOrEmpty(worker.GetProperty("version").GetString()));
        Assert.True(worker.GetProperty("memoryBytes").GetInt64() > 1_000_000);
        Assert.Equal(JsonValueKind.Array, worker.GetProperty("runningTasks").ValueKind);
    }

    [Fact]
    public async Task Health_live_and_ready_answer_healthy_with_their_checks()
    {
        using var live = await Server.Client.GetAsync("/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal("healthy", (await TestServer.ReadJsonAsync(live)).GetProperty("status").GetString());

        var deadline = DateTime.UtcNow.AddSeconds(30);
        JsonElement ready;
        while (true)
        {
            using var response = await Server.Client.GetAsync("/health/ready");
            ready = await TestServer.ReadJsonAsync(response);
            if (response.StatusCode == HttpStatusCode.OK || DateTime.UtcNow > deadline)
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                break;
            }
            await Task.Delay(25);
        }
        Assert.Equal("healthy", ready.GetProperty("status").GetString());
        var checks = ready.GetProperty("checks").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.GetProperty("status").GetString());
        Assert.Equal("healthy", checks["backend"]);
        Assert.Equal("healthy", checks["worker"]);
    }

    [Fact]
    public async Task OpenApi_document_is_json_describing_the_api()
    {
        using var response = await Server.Client.GetAsync("/openapi/v1.json");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var document = await TestServer.ReadJsonAsync(response);
        var paths = document.GetProperty("paths");
        foreach (var path in new[] { "/api/v1/tasks", "/api/v1/tasks/batch", "/api/v1/tasks/{id}", "/api/v1/tasks/{id}/cancel", "/api/v1/queues", "/api/v1/workers" })
        {
            Assert.True(paths.TryGetProperty(path, out _), $"{path} is missing");
        }
        Assert.True(paths.GetProperty("/api/v1/tasks").GetProperty("post").TryGetProperty("requestBody", out _));
    }

    [Fact]
    public void Every_state_is_written_with_its_api_name()
    {
        foreach (var state in Enum.GetValues<TaskState>())
        {
            var resource = new TaskResource { Id = Guid.Empty, Task = "t", Queue = "q", State = state };
            var json = JsonSerializer.SerializeToElement(resource, WebJson);
            Assert.Equal(state.ToApiName(), json.GetProperty("state").GetString());
        }
    }
}

public sealed class WorkerListingTests
{
    [Fact]
    public async Task Worker_that_missed_two_heartbeats_is_listed_dead_after_the_live_ones()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch.AddDays(20000));
        var backend = new Conveyor.Testing.InMemoryBackend(time);
        var options = new WorkerOptions { HeartbeatInterval = TimeSpan.FromSeconds(10) };
        var now = time.GetUtcNow();
        await backend.HeartbeatAsync(new WorkerInfo { Id = "b-alive", Host = "h", HeartbeatAt = now - TimeSpan.FromSeconds(19) }, CancellationToken.None);
        await backend.HeartbeatAsync(new WorkerInfo { Id = "a-dead", Host = "h", HeartbeatAt = now - TimeSpan.FromSeconds(21) }, CancellationToken.None);
        await backend.HeartbeatAsync(new WorkerInfo { Id = "gone", Host = "h", HeartbeatAt = now - TimeSpan.FromHours(2) }, CancellationToken.None);

        var workers = await Conveyor.AspNetCore.WorkerListing.ListAsync(backend, options, now, CancellationToken.None);

        Assert.Equal(["b-alive", "a-dead"], workers.Select(w => w.Id));
        Assert.Equal([true, false], workers.Select(w => w.Alive == true));
    }
}
