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
    public async Task Retry_object_is_stored_and_shown_and_its_lists_stay_out_of_the_headers()
    {
        var id = await Server.EnqueueAsync(new
        {
            task = "conveyor.noop",
            queue = "later",
            delay = "PT1H",
            headers = new Dictionary<string, string> { ["traceparent"] = "00-abc-def-01" },
            retry = new { backoff = "fixed", delay = "PT5S", jitter = 0.1, retryOn = new[] { "HttpRequestException", "System.TimeoutException" }, neverRetryOn = new[] { "ArgumentException" } },
        });

        var task = await Server.GetTaskAsync(id);
        var retry = task.GetProperty("retry");
        Assert.Equal("fixed", retry.GetProperty("backoff").GetString());
        Assert.Equal("PT5S", retry.GetProperty("delay").GetString());
        Assert.Equal("PT5S", retry.GetProperty("maxDelay").GetString());
        Assert.Equal(0.1, retry.GetProperty("jitter").GetDouble());
        Assert.Equal(["HttpRequestException", "System.TimeoutException"], retry.GetProperty("retryOn").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["ArgumentException"], retry.GetProperty("neverRetryOn").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["traceparent"], task.GetProperty("headers").EnumerateObject().Select(h => h.Name));
    }

    [Fact]
    public async Task Retry_fields_left_out_keep_the_tasks_policy_and_maxDelay_alone_means_exponential()
    {
        var partial = await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "later", delay = "PT1H", retry = new { maxDelay = "PT1H", retryOn = new[] { "IOException" } } });
        var none = await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "later", delay = "PT1H" });

        var retry = (await Server.GetTaskAsync(partial)).GetProperty("retry");
        Assert.Equal("exponential", retry.GetProperty("backoff").GetString());
        Assert.Equal("PT1S", retry.GetProperty("delay").GetString());
        Assert.Equal("PT1H", retry.GetProperty("maxDelay").GetString());
        Assert.Equal(0.2, retry.GetProperty("jitter").GetDouble());
        Assert.Equal(["IOException"], retry.GetProperty("retryOn").EnumerateArray().Select(e => e.GetString()));
        var defaults = (await Server.GetTaskAsync(none)).GetProperty("retry");
        Assert.Equal("exponential", defaults.GetProperty("backoff").GetString());
        Assert.Equal("PT10M", defaults.GetProperty("maxDelay").GetString());
        Assert.Empty(defaults.GetProperty("retryOn").EnumerateArray());
    }

    [Fact]
    public async Task An_exception_outside_retryOn_makes_the_task_dead_on_its_first_attempt()
    {
        // Nothing listens on port 1: the request fails with an HttpRequestException, which the list does not retry.
        var id = await Server.EnqueueAsync(new
        {
            task = "http.request",
            args = new { url = "http://127.0.0.1:1/" },
            maxAttempts = 5,
            retry = new { retryOn = new[] { "TimeoutException" } },
        });

        var task = await Server.WaitForStateAsync(id, "dead");
        Assert.Equal(1, task.GetProperty("attempts").GetInt32());
        Assert.Equal("System.Net.Http.HttpRequestException", task.GetProperty("error").GetProperty("type").GetString());
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
            ["name", "pending", "queued", "scheduled", "running", "succeeded", "retrying", "dead", "cancelled", "expired", "paused", "lowerBounds"],
            counted.EnumerateObject().Select(p => p.Name));
        Assert.Equal(1, counted.GetProperty("queued").GetInt64());
        Assert.Equal(1, counted.GetProperty("scheduled").GetInt64());
        // A handful of finished tasks: every count is exact.
        Assert.Equal(0, counted.GetProperty("lowerBounds").GetArrayLength());
    }

    [Theory]
    [InlineData("1")]
    [InlineData("0.5")]
    [InlineData("PT1S")]
    [InlineData("60")]
    public async Task Queues_list_takes_a_max_age_and_answers_a_request_without_one_with_what_it_wrote(string maxAge)
    {
        using var shared = await Server.Client.GetAsync($"/api/v1/queues?maxAge={maxAge}");
        Assert.Equal(HttpStatusCode.OK, shared.StatusCode);

        // Without maxAge, the counts were read after the request came: they include what was enqueued just before.
        var queue = "fresh-" + Guid.NewGuid().ToString("N")[..8];
        await Server.EnqueueAsync(new { task = "conveyor.noop", queue, delay = "PT1H" });
        var queues = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/queues");
        Assert.Equal(1, queues.EnumerateArray().Single(q => q.GetProperty("name").GetString() == queue).GetProperty("scheduled").GetInt64());
    }

    [Theory]
    [InlineData("maxAge=61", "maxAge")]
    [InlineData("maxAge=-1", "maxAge")]
    [InlineData("maxAge=PT2M", "maxAge")]
    [InlineData("maxAge=soon", "maxAge")]
    [InlineData("maxAge=NaN", "maxAge")]
    [InlineData("exact=yes", "exact")]
    public async Task Queues_list_refuses_a_max_age_that_is_not_a_duration_up_to_a_minute_and_an_exact_that_is_not_a_flag(string query, string field)
    {
        using var response = await Server.Client.GetAsync($"/api/v1/queues?{query}");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await TestServer.ReadJsonAsync(response);
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), problem.ToString());
    }

    [Fact]
    public async Task Queues_list_counts_exactly_when_asked()
    {
        var queue = "exact-" + Guid.NewGuid().ToString("N")[..8];
        await Server.EnqueueAsync(new { task = "conveyor.noop", queue, delay = "PT1H" });

        var queues = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/queues?exact=true");

        var counted = queues.EnumerateArray().Single(q => q.GetProperty("name").GetString() == queue);
        Assert.Equal(1, counted.GetProperty("scheduled").GetInt64());
        Assert.Equal(0, counted.GetProperty("lowerBounds").GetArrayLength());
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
        foreach (var path in new[] { "/api/v1/tasks", "/api/v1/tasks/batch", "/api/v1/tasks/{id}", "/api/v1/tasks/{id}/cancel", "/api/v1/tasks/retry", "/api/v1/tasks/purge", "/api/v1/queues", "/api/v1/workers" })
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

/// <summary>Bulk retry and purge over HTTP, on tasks made dead in queues of their own that the server's worker does not
/// consume, so that each test sees only its own.</summary>
public sealed class BulkApiTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    private async Task<List<Guid>> DeadTasksAsync(string queue, int count, string task = "conveyor.noop")
    {
        var backend = Server.Service<Conveyor.Backends.IConveyorBackend>();
        var messages = Enumerable.Range(0, count).Select(_ => new TaskMessage { Id = Guid.CreateVersion7(), Task = task, Queue = queue, CreatedAt = DateTimeOffset.UtcNow }).ToList();
        await backend.Queue.EnqueueAsync(messages, CancellationToken.None);
        var leases = await backend.Queue.FetchAsync(new Conveyor.Backends.FetchRequest
        {
            WorkerId = "bulk-test",
            Queues = [new Conveyor.Backends.QueueWeight(queue)],
            MaxCount = count,
            LeaseDuration = TimeSpan.FromMinutes(1),
        }, CancellationToken.None);
        Assert.Equal(count, leases.Count);
        await backend.Queue.CompleteAsync([.. leases.Select(l => new Conveyor.Backends.Completion
        {
            Lease = l.Ref,
            Kind = Conveyor.Backends.CompletionKind.Dead,
            Attempt = l.Attempt,
            Error = new TaskError("System.IO.IOException", "disk full"),
            At = DateTimeOffset.UtcNow,
        })], CancellationToken.None);
        return messages.Select(m => m.Id).ToList();
    }

    private static string NewQueue() => "bulk-" + Guid.NewGuid().ToString("N")[..12];

    [Fact]
    public async Task Retry_queues_every_matching_dead_task_again_and_answers_how_many()
    {
        var queue = NewQueue();
        var dead = await DeadTasksAsync(queue, 3);
        var other = await DeadTasksAsync(queue, 2, task: "conveyor.sleep");

        using var response = await Server.PostJsonAsync("/api/v1/tasks/retry", $$"""{"queue": "{{queue}}", "task": "conveyor.noop"}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, (await TestServer.ReadJsonAsync(response)).GetProperty("retried").GetInt32());
        foreach (var id in dead)
        {
            var task = await Server.GetTaskAsync(id);
            Assert.Equal("queued", task.GetProperty("state").GetString());
            Assert.Equal(0, task.GetProperty("attempts").GetInt32());
        }
        foreach (var id in other)
        {
            Assert.Equal("dead", (await Server.GetTaskAsync(id)).GetProperty("state").GetString());
        }
    }

    [Fact]
    public async Task Purge_deletes_every_match_within_the_limit_and_a_second_purge_finds_none()
    {
        var queue = NewQueue();
        var dead = await DeadTasksAsync(queue, 4);

        using var first = await Server.PostJsonAsync("/api/v1/tasks/purge", $$"""{"queue": "{{queue}}", "limit": 3}""");
        using var second = await Server.PostJsonAsync("/api/v1/tasks/purge", $$"""{"queue": "{{queue}}", "state": "dead"}""");
        using var third = await Server.PostJsonAsync("/api/v1/tasks/purge", $$"""{"queue": "{{queue}}"}""");

        Assert.Equal(3, (await TestServer.ReadJsonAsync(first)).GetProperty("purged").GetInt32());
        Assert.Equal(1, (await TestServer.ReadJsonAsync(second)).GetProperty("purged").GetInt32());
        Assert.Equal(0, (await TestServer.ReadJsonAsync(third)).GetProperty("purged").GetInt32());
        foreach (var id in dead)
        {
            using var get = await Server.Client.GetAsync($"/api/v1/tasks/{id}");
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }
    }

    [Fact]
    public async Task Finish_time_window_chooses_the_tasks()
    {
        var queue = NewQueue();
        var early = await DeadTasksAsync(queue, 2);
        // SQLite keeps whole milliseconds: the window's edge falls strictly between the two finish times.
        await Task.Delay(20);
        var between = DateTimeOffset.UtcNow;
        await Task.Delay(20);
        var late = await DeadTasksAsync(queue, 1);

        using var response = await Server.PostJsonAsync("/api/v1/tasks/purge",
            $$"""{"queue": "{{queue}}", "finishedBefore": "{{between.UtcDateTime:yyyy-MM-ddTHH:mm:ss.fffZ}}"}""");

        Assert.Equal(2, (await TestServer.ReadJsonAsync(response)).GetProperty("purged").GetInt32());
        foreach (var id in early)
        {
            using var get = await Server.Client.GetAsync($"/api/v1/tasks/{id}");
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }
        Assert.Equal("dead", (await Server.GetTaskAsync(late[0])).GetProperty("state").GetString());
    }

    [Fact]
    public async Task Every_dead_task_needs_all_true()
    {
        var queue = NewQueue();
        var dead = await DeadTasksAsync(queue, 1);

        using var refused = await Server.PostJsonAsync("/api/v1/tasks/retry", "{}");
        var problem = await ApiValidationTests.AssertProblemAsync(refused, HttpStatusCode.UnprocessableEntity);
        ApiValidationTests.AssertNamesField(problem, "all");
        Assert.Equal("dead", (await Server.GetTaskAsync(dead[0])).GetProperty("state").GetString());

        using var accepted = await Server.PostJsonAsync("/api/v1/tasks/retry", """{"all": true}""");
        Assert.Equal(HttpStatusCode.OK, accepted.StatusCode);
        Assert.True((await TestServer.ReadJsonAsync(accepted)).GetProperty("retried").GetInt32() >= 1);
        Assert.Equal("queued", (await Server.GetTaskAsync(dead[0])).GetProperty("state").GetString());
    }
}
