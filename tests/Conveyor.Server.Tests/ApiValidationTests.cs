using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary>Every rejected request answers RFC 9457 problem details naming the field at fault, and stores nothing.</summary>
public sealed class ApiValidationTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    public static TheoryData<string, string> InvalidTasks => new()
    {
        { """{"task": "no.such.task"}""", "task" },
        { """{"queue": "default"}""", "task" },
        { """{"task": 42}""", "task" },
        { """{"task": "conveyor.noop", "queue": "bad queue"}""", "queue" },
        { """{"task": "conveyor.noop", "queue": ""}""", "queue" },
        { """{"task": "conveyor.noop", "priority": 101}""", "priority" },
        { """{"task": "conveyor.noop", "priority": -101}""", "priority" },
        { """{"task": "conveyor.noop", "priority": "high"}""", "priority" },
        { """{"task": "conveyor.noop", "eta": "tomorrow"}""", "eta" },
        { """{"task": "conveyor.noop", "eta": "2030-01-01T00:00:00"}""", "eta" },
        { """{"task": "conveyor.noop", "delay": "30 seconds"}""", "delay" },
        { """{"task": "conveyor.noop", "delay": "P1M"}""", "delay" },
        { """{"task": "conveyor.noop", "delay": "-PT5S"}""", "delay" },
        { """{"task": "conveyor.noop", "delay": "PT5S", "eta": "2030-01-01T00:00:00Z"}""", "eta" },
        { """{"task": "conveyor.noop", "expiresAt": "2001-01-01T00:00:00Z"}""", "expiresAt" },
        { """{"task": "conveyor.noop", "maxAttempts": 0}""", "maxAttempts" },
        { """{"task": "conveyor.noop", "timeout": "PT0S"}""", "timeout" },
        { """{"task": "conveyor.noop", "idempotencyKey": ""}""", "idempotencyKey" },
        { """{"task": "conveyor.noop", "headers": {"traceparent": 1}}""", "headers.traceparent" },
        { """{"task": "conveyor.noop", "dealy": "PT5S"}""", "dealy" },
        { """{"task": "conveyor.noop", "retry": 5}""", "retry" },
        { """{"task": "conveyor.noop", "retry": {"backoff": "linear"}}""", "retry.backoff" },
        { """{"task": "conveyor.noop", "retry": {"backoff": 1}}""", "retry.backoff" },
        { """{"task": "conveyor.noop", "retry": {"delay": "soon"}}""", "retry.delay" },
        { """{"task": "conveyor.noop", "retry": {"delay": "-PT1S"}}""", "retry.delay" },
        { """{"task": "conveyor.noop", "retry": {"delay": "P400D", "maxDelay": "P400D"}}""", "retry.delay" },
        { """{"task": "conveyor.noop", "retry": {"delay": "PT1M", "maxDelay": "PT1S"}}""", "retry.maxDelay" },
        { """{"task": "conveyor.noop", "retry": {"backoff": "fixed", "maxDelay": "PT1M"}}""", "retry.maxDelay" },
        { """{"task": "conveyor.noop", "retry": {"jitter": 2}}""", "retry.jitter" },
        { """{"task": "conveyor.noop", "retry": {"jitter": "high"}}""", "retry.jitter" },
        { """{"task": "conveyor.noop", "retry": {"retryOn": "TimeoutException"}}""", "retry.retryOn" },
        { """{"task": "conveyor.noop", "retry": {"retryOn": [5]}}""", "retry.retryOn[0]" },
        { """{"task": "conveyor.noop", "retry": {"neverRetryOn": ["IOException", "Not A Type"]}}""", "retry.neverRetryOn[1]" },
        { """{"task": "conveyor.noop", "retry": {"retryOnn": []}}""", "retry.retryOnn" },
        { """{"task": "conveyor.noop", "headers": {"conveyor-retry-on": "TimeoutException"}}""", "headers.conveyor-retry-on" },
        { """{"task": "http.request"}""", "args" },
        { """{"task": "http.request", "args": {"url": 5}}""", "args" },
        { """{"task": "http.request", "args": "https://127.0.0.1/"}""", "args" },
        { """{"task": "http.request", "args": {"url": "http://example.com/hook"}}""", "args.url" },
        { """{"task": "http.request", "args": {"url": "ftp://127.0.0.1/file"}}""", "args.url" },
        { """{"task": "http.request", "args": {"url": "http://127.0.0.1/", "method": "BREW"}}""", "args.method" },
        { """{"task": "http.request", "args": {"url": "http://127.0.0.1/", "timeoutSeconds": 0}}""", "args.timeoutSeconds" },
    };

    [Theory]
    [MemberData(nameof(InvalidTasks))]
    public async Task Invalid_task_is_422_naming_the_field_and_stores_nothing(string body, string field)
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync("/api/v1/tasks", body);

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        AssertNamesField(problem, field);
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    public static TheoryData<string, string, string> InvalidFilters => new()
    {
        { "retry", "{}", "all" },
        { "purge", """{"state": "dead"}""", "all" },
        { "retry", """{"state": "succeeded", "all": true}""", "state" },
        { "purge", """{"state": "running", "all": true}""", "state" },
        { "retry", """{"state": "zombie", "all": true}""", "state" },
        { "retry", """{"state": 5, "all": true}""", "state" },
        { "purge", """{"queue": "bad queue"}""", "queue" },
        { "purge", """{"task": 7}""", "task" },
        { "retry", """{"finishedAfter": "yesterday"}""", "finishedAfter" },
        { "retry", """{"finishedAfter": "2030-01-02T00:00:00Z", "finishedBefore": "2030-01-01T00:00:00Z"}""", "finishedAfter" },
        { "purge", """{"limit": 0, "all": true}""", "limit" },
        { "purge", """{"limit": "ten", "all": true}""", "limit" },
        { "retry", """{"all": "yes"}""", "all" },
        { "retry", """{"tsk": "x", "all": true}""", "tsk" },
    };

    [Theory]
    [MemberData(nameof(InvalidFilters))]
    public async Task Invalid_bulk_filter_is_422_naming_the_field_and_changes_nothing(string operation, string body, string field)
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync($"/api/v1/tasks/{operation}", body);

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        AssertNamesField(problem, field);
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Fact]
    public async Task Retry_problem_in_a_batch_names_the_task_and_field()
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks/batch",
            """{"tasks": [{"task": "conveyor.noop"}, {"task": "conveyor.noop", "retry": {"jitter": -1}}]}""");

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        AssertNamesField(problem, "tasks[1].retry.jitter");
    }

    [Fact]
    public async Task Bulk_body_that_is_not_json_is_400()
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks/purge", "{not json");

        await AssertProblemAsync(response, HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Unknown_task_says_which_name_was_unknown()
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks", """{"task": "reports.nightly"}""");

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        var message = problem.GetProperty("errors").GetProperty("task")[0].GetString();
        Assert.Contains("unknown task 'reports.nightly': neither this server nor any live worker declares it", message);
        Assert.Contains("known tasks: ", message);
        Assert.Contains("conveyor.noop", message);
    }

    [Fact]
    public async Task Task_that_a_live_worker_in_another_process_declares_is_accepted()
    {
        var backend = Server.Service<Conveyor.Backends.IConveyorBackend>();
        var name = "remote." + Guid.NewGuid().ToString("N")[..8];
        await backend.Coordination.HeartbeatAsync(new WorkerInfo
        {
            Id = "elsewhere:" + name,
            Host = "elsewhere",
            Tasks = [name],
            HeartbeatAt = DateTimeOffset.UtcNow,
        }, CancellationToken.None);

        // Up to a second old, the server's view of the workers may not have it yet: it reads again when it is older.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        HttpStatusCode status;
        while (true)
        {
            using var response = await Server.PostJsonAsync("/api/v1/tasks", $$"""{"task": "{{name}}"}""");
            status = response.StatusCode;
            if (status == HttpStatusCode.Created || DateTime.UtcNow > deadline)
            {
                break;
            }
            await Task.Delay(100);
        }
        Assert.Equal(HttpStatusCode.Created, status);
        await backend.Coordination.RemoveWorkerAsync("elsewhere:" + name, CancellationToken.None);
    }

    private sealed record ReportArgs(string Title, int Pages);

    [Fact]
    public async Task Arguments_of_a_task_a_remote_worker_declares_are_checked_against_its_schema()
    {
        var backend = Server.Service<Conveyor.Backends.IConveyorBackend>();
        var name = "remote." + Guid.NewGuid().ToString("N")[..8];
        await backend.Coordination.HeartbeatAsync(new WorkerInfo
        {
            Id = "elsewhere:" + name,
            Host = "elsewhere",
            Tasks = [name],
            ArgsSchemas = new Dictionary<string, JsonElement> { [name] = ArgsSchema.For(typeof(ReportArgs))!.Value },
            HeartbeatAt = DateTimeOffset.UtcNow,
        }, CancellationToken.None);
        var before = await Server.CountTasksAsync();

        // Up to a second old, the server's view of the workers may not have it yet: it reads again when it is older.
        var problem = await PostUntilDeclaredAsync("/api/v1/tasks", $$$"""{"task": "{{{name}}}", "args": {"title": "q3", "pages": "many"}}""");
        AssertNamesField(problem, "args.pages");
        Assert.Contains("an integer", problem.GetProperty("errors").GetProperty("args.pages")[0].GetString());
        using (var batch = await Server.PostJsonAsync("/api/v1/tasks/batch",
            $$$"""{"tasks": [{"task": "{{{name}}}", "args": {"pages": 2}}, {"task": "{{{name}}}", "args": {"title": ["q3"]}}]}"""))
        {
            AssertNamesField(await AssertProblemAsync(batch, HttpStatusCode.UnprocessableEntity), "tasks[1].args.title");
        }
        using (var missing = await Server.PostJsonAsync("/api/v1/tasks", $$"""{"task": "{{name}}"}"""))
        {
            AssertNamesField(await AssertProblemAsync(missing, HttpStatusCode.UnprocessableEntity), "args");
        }
        Assert.Equal(before, await Server.CountTasksAsync());

        using (var good = await Server.PostJsonAsync("/api/v1/tasks", $$$"""{"task": "{{{name}}}", "args": {"title": "q3", "pages": "12"}}"""))
        {
            Assert.Equal(HttpStatusCode.Created, good.StatusCode);
        }
        using (var goodBatch = await Server.PostJsonAsync("/api/v1/tasks/batch",
            $$$"""{"tasks": [{"task": "{{{name}}}", "args": {"title": "a", "pages": 1}}, {"task": "conveyor.noop"}]}"""))
        {
            Assert.Equal(HttpStatusCode.Created, goodBatch.StatusCode);
        }
        await backend.Coordination.RemoveWorkerAsync("elsewhere:" + name, CancellationToken.None);
    }

    [Fact]
    public async Task Arguments_are_accepted_when_a_live_declaring_worker_has_no_schema_for_them()
    {
        var backend = Server.Service<Conveyor.Backends.IConveyorBackend>();
        var name = "remote." + Guid.NewGuid().ToString("N")[..8];
        var now = DateTimeOffset.UtcNow;
        // A rolling update: the newer worker announces a schema, an older one (no schemas yet) declares the name too.
        await backend.Coordination.HeartbeatAsync(new WorkerInfo
        {
            Id = "new:" + name,
            Host = "new",
            Tasks = [name],
            StartedAt = now,
            HeartbeatAt = now,
            ArgsSchemas = new Dictionary<string, JsonElement> { [name] = ArgsSchema.For(typeof(ReportArgs))!.Value },
        }, CancellationToken.None);
        await backend.Coordination.HeartbeatAsync(new WorkerInfo
        {
            Id = "old:" + name,
            Host = "old",
            Tasks = [name],
            StartedAt = now.AddHours(-1),
            HeartbeatAt = now,
        }, CancellationToken.None);

        var deadline = DateTime.UtcNow.AddSeconds(10);
        HttpStatusCode status;
        while (true)
        {
            using var response = await Server.PostJsonAsync("/api/v1/tasks", $$$"""{"task": "{{{name}}}", "args": {"pages": "many"}}""");
            status = response.StatusCode;
            if (status == HttpStatusCode.Created || DateTime.UtcNow > deadline)
            {
                break;
            }
            await Task.Delay(100);
        }
        Assert.Equal(HttpStatusCode.Created, status);
        await backend.Coordination.RemoveWorkerAsync("new:" + name, CancellationToken.None);
        await backend.Coordination.RemoveWorkerAsync("old:" + name, CancellationToken.None);
    }

    [Fact]
    public async Task Tasks_no_live_worker_declares_are_listed_as_waiting_for_a_handler()
    {
        var backend = Server.Service<Conveyor.Backends.IConveyorBackend>();
        var name = "remote." + Guid.NewGuid().ToString("N")[..8];
        var worker = new WorkerInfo { Id = "elsewhere:" + name, Host = "elsewhere", Tasks = [name], HeartbeatAt = DateTimeOffset.UtcNow };
        await backend.Coordination.HeartbeatAsync(worker, CancellationToken.None);
        await PostUntilDeclaredAsync("/api/v1/tasks/batch", $$"""{"tasks": [{"task": "{{name}}", "queue": "reports"}, {"task": "{{name}}", "queue": "reports"}]}""",
            expected: HttpStatusCode.Created);

        var declared = await WaitingForHandlerAsync();
        Assert.DoesNotContain(declared.GetProperty("tasks").EnumerateArray(), t => t.GetProperty("task").GetString() == name);

        await backend.Coordination.RemoveWorkerAsync(worker.Id, CancellationToken.None);
        var waiting = await WaitingForHandlerAsync();
        var entry = Assert.Single(waiting.GetProperty("tasks").EnumerateArray(), t => t.GetProperty("task").GetString() == name);
        Assert.Equal("reports", entry.GetProperty("queue").GetString());
        Assert.Equal(2, entry.GetProperty("count").GetInt64());
        Assert.Equal(2, entry.GetProperty("states").EnumerateObject().Sum(s => s.Value.GetInt64()));
        Assert.True(waiting.GetProperty("complete").GetBoolean());
    }

    private async Task<JsonElement> WaitingForHandlerAsync()
    {
        using var response = await Server.Client.GetAsync("/api/v1/tasks/waiting-for-handler");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await TestServer.ReadJsonAsync(response);
    }

    /// <summary>Posts until the answer is no longer "unknown task" (the server reads live workers at most once a second);
    /// returns the problem of the last answer, which must have <paramref name="expected"/> status.</summary>
    private async Task<JsonElement> PostUntilDeclaredAsync(string path, string body, HttpStatusCode expected = HttpStatusCode.UnprocessableEntity)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            using var response = await Server.PostJsonAsync(path, body);
            var text = await response.Content.ReadAsStringAsync();
            if (!text.Contains("unknown task", StringComparison.Ordinal) || DateTime.UtcNow > deadline)
            {
                Assert.True(response.StatusCode == expected, $"{response.StatusCode}: {text}");
                return string.IsNullOrEmpty(text) ? default : JsonDocument.Parse(text).RootElement.Clone();
            }
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task Every_problem_of_a_request_is_reported_at_once()
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks",
            """{"task": "no.such.task", "queue": "bad queue", "priority": 500, "eta": "soon"}""");

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        foreach (var field in new[] { "task", "queue", "priority", "eta" })
        {
            AssertNamesField(problem, field);
        }
    }

    [Fact]
    public async Task Malformed_json_is_400_saying_where_it_broke()
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync("/api/v1/tasks", "{\"task\": \"conveyor.noop\",\n \"queue\": }");

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Contains("line 2", problem.GetProperty("detail").GetString());
        Assert.Equal(2, problem.GetProperty("line").GetInt32());
        Assert.True(problem.GetProperty("bytePosition").GetInt32() > 1);
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Theory]
    [InlineData("")]
    [InlineData("[1, 2]")]
    [InlineData("\"conveyor.noop\"")]
    public async Task Body_that_is_not_a_json_object_is_400(string body)
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks", body);

        await AssertProblemAsync(response, HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Body_that_is_not_json_content_is_415()
    {
        using var response = await Server.Client.PostAsync("/api/v1/tasks", new StringContent("task=conveyor.noop", Encoding.UTF8, "application/x-www-form-urlencoded"));

        await AssertProblemAsync(response, HttpStatusCode.UnsupportedMediaType);
    }

    [Fact]
    public void Default_body_limit_is_one_mebibyte()
    {
        Assert.Equal(1024 * 1024, new Conveyor.AspNetCore.ConveyorApiOptions().MaxRequestBodySize);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Body_over_the_limit_is_413_problem_with_or_without_content_length(bool declareLength)
    {
        var before = await Server.CountTasksAsync();
        // A valid task padded past 1 MiB, so only its size is wrong.
        var json = "{\"task\": \"conveyor.noop\", \"args\": \"" + new string('x', 1024 * 1024) + "\"}";
        HttpContent content = declareLength
            ? new StringContent(json, Encoding.UTF8, "application/json")
            : new StreamContent(new NonSeekableStream(Encoding.UTF8.GetBytes(json)));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using (content)
        {
            using var response = await Server.Client.PostAsync("/api/v1/tasks", content);

            var problem = await AssertProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
            Assert.Equal(1024 * 1024, problem.GetProperty("limit").GetInt64());
        }
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Fact]
    public async Task Batch_with_one_bad_item_stores_nothing_and_names_the_item()
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync("/api/v1/tasks/batch", """
            {"tasks": [
              {"task": "conveyor.noop"}, {"task": "conveyor.noop"}, {"task": "conveyor.noop"},
              {"task": "conveyor.noop", "queue": "no spaces allowed"}, {"task": "conveyor.noop"}
            ]}
            """);

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        AssertNamesField(problem, "tasks[3].queue");
        Assert.Single(problem.GetProperty("errors").EnumerateObject());
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Theory]
    [InlineData("""{"tasks": []}""", "tasks")]
    [InlineData("""{"tasks": {"task": "conveyor.noop"}}""", "tasks")]
    [InlineData("""{}""", "tasks")]
    [InlineData("""{"tasks": [{"task": "conveyor.noop"}], "extra": 1}""", "extra")]
    [InlineData("""{"tasks": [{"task": "conveyor.noop"}, 7]}""", "tasks[1]")]
    [InlineData("""{"tasks": [{"task": "conveyor.noop"}, {"task": "conveyor.noop", "priority": 1000}]}""", "tasks[1].priority")]
    public async Task Malformed_batch_is_422_naming_the_field(string body, string field)
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync("/api/v1/tasks/batch", body);

        AssertNamesField(await AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity), field);
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Theory]
    [InlineData("GET", "")]
    [InlineData("POST", "/cancel")]
    [InlineData("POST", "/retry")]
    public async Task Unknown_task_id_is_404(string method, string suffix)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), $"/api/v1/tasks/{Guid.CreateVersion7()}{suffix}");
        using var response = await Server.Client.SendAsync(request);

        await AssertProblemAsync(response, HttpStatusCode.NotFound);
    }

    [Theory]
    [InlineData("GET", "")]
    [InlineData("POST", "/cancel")]
    [InlineData("POST", "/retry")]
    public async Task Malformed_task_id_is_400_naming_id(string method, string suffix)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), $"/api/v1/tasks/not-a-uuid{suffix}");
        using var response = await Server.Client.SendAsync(request);

        AssertNamesField(await AssertProblemAsync(response, HttpStatusCode.BadRequest), "id");
    }

    [Theory]
    [InlineData("state=finished", "state")]
    [InlineData("queue=bad%20queue", "queue")]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=many", "limit")]
    [InlineData("cursor=not-a-cursor", "cursor")]
    public async Task Bad_list_query_is_400_naming_the_parameter(string query, string field)
    {
        using var response = await Server.Client.GetAsync($"/api/v1/tasks?{query}");

        AssertNamesField(await AssertProblemAsync(response, HttpStatusCode.BadRequest), field);
    }

    [Fact]
    public async Task Pausing_an_invalid_queue_name_is_400_naming_it()
    {
        using var response = await Server.Client.PostAsync("/api/v1/queues/bad%20name/pause", null);

        AssertNamesField(await AssertProblemAsync(response, HttpStatusCode.BadRequest), "name");
    }

    [Fact]
    public async Task Unknown_api_route_is_a_404_problem()
    {
        using var response = await Server.Client.GetAsync("/api/v1/nothing-here");

        await AssertProblemAsync(response, HttpStatusCode.NotFound);
    }

    internal static async Task<JsonElement> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"Expected {(int)status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var document = JsonDocument.Parse(text);
        var problem = document.RootElement.Clone();
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("title").GetString()));
        return problem;
    }

    internal static void AssertNamesField(JsonElement problem, string field)
    {
        Assert.True(problem.TryGetProperty("errors", out var errors), $"No 'errors' in {problem}");
        Assert.True(errors.TryGetProperty(field, out var messages), $"'{field}' is not named in {errors}");
        Assert.False(string.IsNullOrWhiteSpace(messages[0].GetString()));
        Assert.Contains(field, problem.GetProperty("detail").GetString());
    }

    /// <summary>Sends its bytes chunked: HttpClient cannot know the length of a stream that cannot seek.</summary>
    private sealed class NonSeekableStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }
}
