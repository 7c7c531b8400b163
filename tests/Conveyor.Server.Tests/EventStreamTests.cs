using System.Diagnostics;
using System.Net;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>GET /api/v1/events</c> on the real server in this process (SQLite), read as a browser's EventSource reads it.</summary>
public sealed class EventStreamTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    /// <summary>A queue the test servers' worker does not consume: tasks there stay queued.</summary>
    private const string IdleQueue = "sse-idle";

    private static Task<TestServer> StartAsync(Dictionary<string, string?>? settings = null)
    {
        var all = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase) { ["Conveyor:Http:AllowedHosts:0"] = "127.0.0.1" };
        foreach (var (key, value) in settings ?? [])
        {
            all[key] = value;
        }
        return TestServer.StartAsync(all);
    }

    [Fact]
    public async Task A_task_shows_enqueued_started_and_succeeded_in_order_each_as_a_JSON_event_with_its_fields()
    {
        await using var server = await StartAsync();
        await using var stream = await SseClient.OpenAsync(server.BaseAddress);
        await stream.WaitUntilAsync(s => s.Comments.Any(c => c.StartsWith("connected", StringComparison.Ordinal)), Deadline, "the connected comment");

        var id = await server.EnqueueAsync(new { task = "conveyor.noop", args = new { n = 1 }, queue = "default" });
        await stream.WaitUntilAsync(s => s.EventsOf(id).Any(e => e.Type == "succeeded"), Deadline, $"task {id} to succeed");

        stream.AssertNoProtocolErrors();
        var events = stream.EventsOf(id);
        Assert.Equal(["enqueued", "started", "succeeded"], events.Select(e => e.Type));
        Assert.Equal(["queued", "running", "succeeded"], events.Select(e => e.Get("state")));
        Assert.All(events, e =>
        {
            Assert.Equal("conveyor.noop", e.Get("task"));
            Assert.Equal("default", e.Get("queue"));
            Assert.True(DateTimeOffset.TryParse(e.Get("at"), System.Globalization.CultureInfo.InvariantCulture, out _), $"'at' of {e}");
            Assert.False(string.IsNullOrEmpty(e.Get("origin")), $"no origin in {e}");
            Assert.False(string.IsNullOrEmpty(e.Id), $"no id: line before {e}");
        });
        Assert.Null(events[0].Get("attempt"));
        Assert.Equal("1", events[1].Get("attempt"));
        Assert.Equal("1", events[2].Get("attempt"));
        var worker = events[1].Get("workerId");
        Assert.False(string.IsNullOrEmpty(worker));
        Assert.Equal(worker, events[2].Get("workerId"));
        Assert.True(double.TryParse(events[2].Get("durationMs"), System.Globalization.CultureInfo.InvariantCulture, out var duration) && duration >= 0, $"durationMs of {events[2]}");
        var times = events.Select(e => DateTimeOffset.Parse(e.Get("at")!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(times[0] <= times[1] && times[1] <= times[2], string.Join(", ", times));
        // The ids number the events of one stream in order.
        var ids = stream.Messages.Select(m => long.Parse(m.Id!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(ids.Order(), ids);
    }

    [Fact]
    public async Task A_workflow_steps_events_carry_its_id_and_step_and_the_workflow_filter_passes_only_them()
    {
        await using var server = await StartAsync();
        async Task<Guid> StartWorkflowAsync()
        {
            using var response = await server.PostJsonAsync("/api/v1/workflows",
                """{"steps": [{"id": "first", "task": "conveyor.noop"}, {"id": "second", "task": "conveyor.noop", "after": ["first"]}]}""");
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.Created, text);
            return JsonDocument.Parse(text).RootElement.GetProperty("id").GetGuid();
        }
        // The stream must be open before the workflow starts; its id is not known yet, so a first workflow (unfiltered
        // stream) gives the shape, and a second one the filter.
        await using var all = await SseClient.OpenAsync(server.BaseAddress);
        await all.WaitUntilAsync(s => s.Comments.Any(c => c.StartsWith("connected", StringComparison.Ordinal)), Deadline, "the connected comment");
        var first = await StartWorkflowAsync();
        await all.WaitForAsync(e => e.Get("workflowId") == first.ToString() && e.Get("stepId") == "second" && e.Type == "succeeded", Deadline, "the second step's success");
        var ofFirst = all.Messages.Where(e => e.Event == "task" && e.Get("workflowId") == first.ToString()).ToList();
        // Each step's own events in order. Across steps the stream keeps no order: the second step, released by the
        // first's stored success, can be fetched and started before the worker has published that success's event.
        Assert.Equal(["started", "succeeded"], ofFirst.Where(e => e.Get("stepId") == "first").Select(e => e.Type));
        Assert.Equal(["started", "succeeded"], ofFirst.Where(e => e.Get("stepId") == "second").Select(e => e.Type));
        Assert.Equal(4, ofFirst.Count);
        // The workflow's own events: created before its steps ran, succeeded (once) after its last step.
        await all.WaitForAsync(e => e.Event == "workflow" && e.Get("workflowId") == first.ToString() && e.Type == "succeeded", Deadline, "the workflow's succeeded event");
        var workflowEvents = all.Messages.Where(e => e.Event == "workflow" && e.Get("workflowId") == first.ToString()).ToList();
        Assert.Equal(["created", "succeeded"], workflowEvents.Select(e => e.Type));
        Assert.Equal(["running", "succeeded"], workflowEvents.Select(e => e.Get("state")));
        Assert.All(workflowEvents, e => Assert.False(string.IsNullOrEmpty(e.Get("origin")), $"no origin in {e}"));
        var messages = all.Messages.ToList();
        Assert.True(messages.IndexOf(workflowEvents[0]) < messages.IndexOf(ofFirst[0]), "created came after a step's start");
        Assert.True(messages.IndexOf(workflowEvents[1]) > messages.IndexOf(ofFirst.Single(e => e.Get("stepId") == "second" && e.Type == "succeeded")),
            "succeeded came before the last step's success");

        using var bad = await server.Client.GetAsync("/api/v1/events?workflow=nope");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("not a workflow id", await bad.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var plain = await server.EnqueueAsync(new { task = "conveyor.noop", queue = "default" });
        await all.WaitUntilAsync(s => s.EventsOf(plain).Any(e => e.Type == "succeeded"), Deadline, $"task {plain} to succeed");
        Assert.All(all.EventsOf(plain), e => Assert.Null(e.Get("workflowId")));
        await using var filtered = await SseClient.OpenAsync(server.BaseAddress, $"?workflow={first}");
        await filtered.WaitUntilAsync(s => s.Comments.Any(c => c.StartsWith("connected", StringComparison.Ordinal)), Deadline, "the connected comment");
        var second = await StartWorkflowAsync();
        await server.EnqueueAsync(new { task = "conveyor.noop", queue = "default" });
        await all.WaitForAsync(e => e.Get("workflowId") == second.ToString() && e.Get("stepId") == "second" && e.Type == "succeeded", Deadline, "the second workflow's end");
        // Nothing of the second workflow or the plain task passed the first workflow's filter.
        Assert.Empty(filtered.Messages);
        filtered.AssertNoProtocolErrors();
    }

    [Fact]
    public async Task Workflow_types_select_workflow_events_and_task_filters_leave_them_out()
    {
        await using var server = await StartAsync();
        await using var ends = await SseClient.OpenAsync(server.BaseAddress, "?type=workflow.succeeded,workflow.failed");
        await using var byQueue = await SseClient.OpenAsync(server.BaseAddress, "?queue=default");
        await using var started = await SseClient.OpenAsync(server.BaseAddress, "?type=started");
        foreach (var stream in new[] { ends, byQueue, started })
        {
            await stream.WaitUntilAsync(s => s.Comments.Any(c => c.StartsWith("connected", StringComparison.Ordinal)), Deadline, "the connected comment");
        }
        async Task<Guid> StartWorkflowAsync(string body)
        {
            using var response = await server.PostJsonAsync("/api/v1/workflows", body);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.Created, text);
            return JsonDocument.Parse(text).RootElement.GetProperty("id").GetGuid();
        }
        var succeeds = await StartWorkflowAsync("""{"name": "sse-ok", "steps": [{"id": "a", "task": "conveyor.noop"}, {"id": "b", "task": "conveyor.noop", "after": ["a"]}]}""");
        // A 404 fails the step permanently: the workflow fails.
        var failingUrl = new Uri(server.BaseAddress, "/no-such-page").ToString();
        var fails = await StartWorkflowAsync($$$"""{"steps": [{"id": "a", "task": "http.request", "args": {"url": "{{{failingUrl}}}"}}, {"id": "b", "task": "conveyor.noop", "after": ["a"]}]}""");
        await ends.WaitForAsync(e => e.Get("workflowId") == succeeds.ToString(), Deadline, "the succeeded workflow's end");
        await ends.WaitForAsync(e => e.Get("workflowId") == fails.ToString(), Deadline, "the failed workflow's end");
        await byQueue.WaitForAsync(e => e.Get("workflowId") == fails.ToString() && e.Get("stepId") == "a" && e.Type == "dead", Deadline, "the failing step's dead event");

        ends.AssertNoProtocolErrors();
        Assert.All(ends.Messages, e => Assert.Equal("workflow", e.Event));
        Assert.Equal(["succeeded", "failed"], ends.Messages.OrderBy(e => e.Get("workflowId") == fails.ToString()).Select(e => e.Type));
        Assert.Equal("sse-ok", ends.Messages.Single(e => e.Type == "succeeded").Get("name"));
        Assert.Equal("failed", ends.Messages.Single(e => e.Type == "failed").Get("state"));
        Assert.All(byQueue.Messages, e => Assert.Equal("task", e.Event));
        Assert.All(started.Messages, e => Assert.Equal("task", e.Event));

        using var bad = await server.Client.GetAsync("/api/v1/events?type=workflow.exploded");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("workflow.created", await bad.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_queue_filter_passes_only_that_queues_events()
    {
        await using var server = await StartAsync();
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, "?queue=sse-a");

        var other = await server.EnqueueAsync(new { task = "conveyor.noop", queue = "sse-b" });
        var wanted = await server.EnqueueAsync(new { task = "conveyor.noop", queue = "sse-a" });
        await stream.WaitForAsync(e => e.TaskId == wanted && e.Type == "enqueued", Deadline, "the sse-a task's enqueued event");

        stream.AssertNoProtocolErrors();
        Assert.Empty(stream.EventsOf(other));
        Assert.All(stream.Messages, e => Assert.Equal("sse-a", e.Get("queue")));
    }

    [Fact]
    public async Task The_task_filter_passes_only_that_tasks_events()
    {
        await using var server = await StartAsync();
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, "?task=conveyor.noop");

        var other = await server.EnqueueAsync(new { task = "http.request", args = new { url = "http://127.0.0.1:1/" }, queue = IdleQueue });
        var wanted = await server.EnqueueAsync(new { task = "conveyor.noop", queue = IdleQueue });
        await stream.WaitForAsync(e => e.TaskId == wanted && e.Type == "enqueued", Deadline, "the noop task's enqueued event");

        stream.AssertNoProtocolErrors();
        Assert.Empty(stream.EventsOf(other));
        Assert.All(stream.Messages, e => Assert.Equal("conveyor.noop", e.Get("task")));
    }

    [Fact]
    public async Task Type_failed_passes_retrying_and_dead_and_nothing_else()
    {
        await using var server = await StartAsync();
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, "?type=failed");

        var succeeds = await server.EnqueueAsync(new { task = "conveyor.noop" });
        await server.WaitForStateAsync(succeeds, "succeeded");
        // Connection refused: the attempt fails and is retried later. A 404: the task fails permanently, dead at once.
        var retries = await server.EnqueueAsync(new { task = "http.request", args = new { url = "http://127.0.0.1:1/" }, maxAttempts = 5 });
        var dies = await server.EnqueueAsync(new { task = "http.request", args = new { url = new Uri(server.BaseAddress, "/no-such-page").ToString() }, maxAttempts = 5 });
        await stream.WaitUntilAsync(s => s.EventsOf(retries).Any(e => e.Type == "retrying") && s.EventsOf(dies).Any(e => e.Type == "dead"),
            Deadline, "a retrying and a dead event");

        stream.AssertNoProtocolErrors();
        Assert.All(stream.Messages, e => Assert.Contains(e.Type, (string[])["retrying", "dead"]));
        Assert.Empty(stream.EventsOf(succeeds));
        var retrying = stream.EventsOf(retries)[0];
        Assert.Equal("retrying", retrying.Get("state"));
        Assert.NotNull(retrying.Get("retryAt"));
        Assert.NotNull(retrying.Get("error"));
        var dead = stream.EventsOf(dies).Single();
        Assert.Equal("dead", dead.Get("state"));
        Assert.Contains("404", dead.Get("error"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_state_filter_passes_only_events_that_leave_the_task_in_that_state()
    {
        await using var server = await StartAsync();
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, "?state=succeeded");

        var id = await server.EnqueueAsync(new { task = "conveyor.noop" });
        await stream.WaitForAsync(e => e.TaskId == id && e.Type == "succeeded", Deadline, "the succeeded event");
        // A later task's succeeded event, so that any enqueued or started event of the first would have come by now.
        var second = await server.EnqueueAsync(new { task = "conveyor.noop" });
        await stream.WaitForAsync(e => e.TaskId == second, Deadline, "the second task's succeeded event");

        stream.AssertNoProtocolErrors();
        Assert.Equal(["succeeded"], stream.EventsOf(id).Select(e => e.Type));
        Assert.All(stream.Messages, e => Assert.Equal("succeeded", e.Get("state")));
    }

    [Theory]
    [InlineData("?type=finished", "type", "'finished' is not an event type", "enqueued, started, succeeded, retrying, dead, cancelled, expired, failed, or workflow.created")]
    [InlineData("?type=started,bogus", "type", "'bogus'", "failed")]
    [InlineData("?state=done", "state", "'done' is not a state", "scheduled")]
    [InlineData("?queue=no%20spaces", "queue", "'no spaces' is not a queue name", "letters, digits")]
    public async Task A_bad_filter_value_answers_400_naming_the_field_and_the_accepted_values(string query, string field, string says, string accepted)
    {
        await using var server = await StartAsync();
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, query, expectOk: false);

        var body = await stream.ReadBodyAsync();
        Assert.True(stream.StatusCode == HttpStatusCode.BadRequest, $"{(int)stream.StatusCode}: {body}");
        using var problem = JsonDocument.Parse(body);
        var errors = problem.RootElement.GetProperty("errors").GetProperty(field).EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.Contains(errors, e => e.Contains(says, StringComparison.Ordinal) && e.Contains(accepted, StringComparison.Ordinal));
        if (field == "state")
        {
            // Every state is named.
            Assert.All(Enum.GetValues<TaskState>(), s => Assert.Contains(s.ToApiName(), errors[0], StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task An_idle_stream_gets_a_heartbeat_comment()
    {
        await using var server = await StartAsync(new() { ["Conveyor:EventStreamHeartbeat"] = "00:00:00.200" });
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, "?queue=" + IdleQueue);

        await stream.WaitUntilAsync(s => s.Comments.Count(c => c == "heartbeat") >= 2, TimeSpan.FromSeconds(10), "two heartbeat comments");
        Assert.Empty(stream.Messages);
    }

    [Fact]
    public async Task A_client_that_does_not_read_is_sent_overflow_and_its_stream_ends()
    {
        const int buffer = 8;
        const int batches = 6;
        const int perBatch = 1000;
        await using var server = await StartAsync(new() { ["Conveyor:EventStreamBuffer"] = buffer.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        // A small receive buffer and no reading: after a few kilobytes in the sockets and Kestrel's output buffer, the
        // server's writes wait, and events pile up in the client's buffer on the server.
        await using var stream = await SseClient.OpenAsync(server.BaseAddress, "?queue=" + IdleQueue, read: false, receiveBufferSize: 4096);

        var task = $$"""{"task":"conveyor.noop","queue":"{{IdleQueue}}"}""";
        var batch = "{\"tasks\":[" + string.Join(',', Enumerable.Repeat(task, perBatch)) + "]}";
        for (var i = 0; i < batches; i++)
        {
            using var response = await server.PostJsonAsync("/api/v1/tasks/batch", batch);
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        }

        // Now read: what the server had written before it stopped waiting, then the overflow notice, then the end.
        stream.StartReading();
        var overflow = await stream.WaitForAsync(e => e.Event == "overflow", Deadline, "event: overflow");
        await stream.Completion.WaitAsync(Deadline);

        stream.AssertNoProtocolErrors();
        Assert.True(stream.Ended);
        Assert.Same(overflow, stream.Messages[^1]);
        Assert.Equal(buffer, overflow.Json!.Value.GetProperty("buffer").GetInt32());
        Assert.Contains("reconnect", overflow.Json!.Value.GetProperty("reason").GetString(), StringComparison.Ordinal);
        // The server dropped the client instead of keeping every event for it.
        var delivered = stream.Messages.Count(m => m.Event == "task");
        Assert.True(delivered < batches * perBatch / 2, $"{delivered} of {batches * perBatch} events were delivered to a client that did not read");
        // The server goes on serving other clients.
        await using var next = await SseClient.OpenAsync(server.BaseAddress, "?queue=" + IdleQueue);
        var id = await server.EnqueueAsync(new { task = "conveyor.noop", queue = IdleQueue });
        await next.WaitForAsync(e => e.TaskId == id, Deadline, "an event on a new stream");
    }

    [Fact]
    public async Task The_stream_ends_cleanly_when_the_server_stops()
    {
        var server = await StartAsync();
        try
        {
            await using var stream = await SseClient.OpenAsync(server.BaseAddress);
            await stream.WaitUntilAsync(s => s.Comments.Any(c => c.StartsWith("connected", StringComparison.Ordinal)), Deadline, "the connected comment");

            var clock = Stopwatch.StartNew();
            await server.App.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
            var stopped = clock.Elapsed;
            // The end of the body, not a broken connection: Completion does not fault.
            await stream.Completion.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(stream.Ended);
            // An open stream does not hold the server up (the host would wait up to its shutdown timeout).
            Assert.True(stopped < TimeSpan.FromSeconds(10), $"the server took {stopped} to stop with a stream open");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}

