using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>/api/v1/workflows</c> on a server with a worker: a DAG and the shorthands run to their end, a failed
/// step fails its workflow, a workflow is cancelled, and bad input is refused with 422 naming the step.</summary>
public sealed class WorkflowApiTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    private async Task<Guid> CreateAsync(string body)
    {
        using var response = await Server.PostJsonAsync("/api/v1/workflows", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"{(int)response.StatusCode}: {text}");
        var id = JsonDocument.Parse(text).RootElement.GetProperty("id").GetGuid();
        Assert.Equal($"/api/v1/workflows/{id}", response.Headers.Location?.OriginalString);
        return id;
    }

    /// <summary>Polls the workflow until it leaves running; fails with its last shape after 30 s.</summary>
    private async Task<JsonElement> WaitFinishedAsync(Guid id)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var workflow = await Server.Client.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{id}");
            if (workflow.GetProperty("state").GetString() != "running")
            {
                return workflow;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Workflow {id} did not finish in time; it is: {workflow}");
            }
            await Task.Delay(25);
        }
    }

    private static JsonElement Step(JsonElement workflow, string id) =>
        workflow.GetProperty("steps").EnumerateArray().Single(s => s.GetProperty("id").GetString() == id);

    [Fact]
    public async Task A_dag_runs_each_step_after_those_it_names_and_shows_every_steps_state()
    {
        var name = $"harvest-{Guid.NewGuid():N}";
        var id = await CreateAsync($$$"""
            {"name": "{{{name}}}", "steps": [
              {"id": "fetch", "task": "conveyor.sleep", "args": {"ms": 10}},
              {"id": "index", "task": "conveyor.noop", "after": ["fetch"]},
              {"id": "thumbs", "task": "conveyor.noop", "after": ["fetch"]},
              {"id": "report", "task": "conveyor.noop", "after": ["index", "thumbs"], "queue": "default"}]}
            """);
        var workflow = await WaitFinishedAsync(id);
        Assert.Equal("succeeded", workflow.GetProperty("state").GetString());
        Assert.Equal(name, workflow.GetProperty("name").GetString());
        Assert.Equal(["index", "thumbs"], Step(workflow, "report").GetProperty("after").EnumerateArray().Select(a => a.GetString()));
        var fetched = Step(workflow, "fetch").GetProperty("finishedAt").GetDateTimeOffset();
        foreach (var later in new[] { "index", "thumbs" })
        {
            var step = Step(workflow, later);
            Assert.Equal("succeeded", step.GetProperty("state").GetString());
            Assert.True(step.GetProperty("startedAt").GetDateTimeOffset() >= fetched, later);
        }
        var task = await Server.GetTaskAsync(Step(workflow, "report").GetProperty("taskId").GetGuid());
        Assert.Equal("succeeded", task.GetProperty("state").GetString());
        Assert.Equal(["pending", "queued", "running", "succeeded"], task.GetProperty("transitions").EnumerateArray().Select(t => t.GetProperty("state").GetString()));

        var listed = await Server.Client.GetFromJsonAsync<JsonElement>($"/api/v1/workflows?name={name}&state=succeeded");
        Assert.Equal(id, Assert.Single(listed.GetProperty("items").EnumerateArray()).GetProperty("id").GetGuid());
    }

    [Fact]
    public async Task The_chain_group_and_chord_shorthands_run()
    {
        var chain = await CreateAsync("""{"chain": [{"task": "conveyor.noop"}, {"task": "conveyor.noop"}]}""");
        var group = await CreateAsync("""{"group": [{"task": "conveyor.noop"}, {"task": "conveyor.noop"}]}""");
        var chord = await CreateAsync("""{"chord": {"group": [{"task": "conveyor.noop"}, {"task": "conveyor.noop"}], "callback": {"task": "conveyor.noop"}}}""");
        Assert.Equal(["0"], Step(await WaitFinishedAsync(chain), "1").GetProperty("after").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("succeeded", (await WaitFinishedAsync(group)).GetProperty("state").GetString());
        var chordDone = await WaitFinishedAsync(chord);
        Assert.Equal("succeeded", chordDone.GetProperty("state").GetString());
        Assert.Equal(["0", "1"], Step(chordDone, "callback").GetProperty("after").EnumerateArray().Select(a => a.GetString()));
    }

    [Fact]
    public async Task A_batch_runs_each_member_to_its_own_end_its_error_step_at_a_failure_and_its_success_callback_only_when_all_succeed()
    {
        var succeeds = await CreateAsync("""
            {"name": "batch-ok", "batch": {"tasks": [{"task": "conveyor.noop"}, {"task": "conveyor.sleep", "args": {"ms": 20}}], "onSuccess": {"task": "conveyor.noop"}}}
            """);
        var fails = await CreateAsync("""
            {"onError": {"task": "conveyor.noop"}, "batch": {"tasks": [
              {"task": "conveyor.sleep", "args": {"ms": -1}}, {"task": "conveyor.sleep", "args": {"ms": 200}}, {"task": "conveyor.noop"}],
              "onSuccess": {"task": "conveyor.noop"}}}
            """);
        var ok = await WaitFinishedAsync(succeeds);
        Assert.Equal("succeeded", ok.GetProperty("state").GetString());
        Assert.Equal(["0", "1"], Step(ok, "callback").GetProperty("after").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("succeeded", Step(ok, "callback").GetProperty("state").GetString());

        var failed = await WaitFinishedAsync(fails);
        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Equal("dead", Step(failed, "0").GetProperty("state").GetString());
        // A batch continues on failure by default: the slower member ran to its end after the first one failed.
        Assert.Equal("continue", Step(failed, "1").GetProperty("onFailure").GetString());
        Assert.Equal("succeeded", Step(failed, "1").GetProperty("state").GetString());
        Assert.Equal("succeeded", Step(failed, "2").GetProperty("state").GetString());
        Assert.Equal("cancelled", Step(failed, "callback").GetProperty("state").GetString());
        Assert.Equal("succeeded", Step(failed, "error").GetProperty("state").GetString());
    }

    /// <summary>Polls the workflow until step <paramref name="stepId"/> has ended; fails with its last shape after 30 s.</summary>
    private async Task<JsonElement> WaitStepEndedAsync(Guid id, string stepId)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var workflow = await Server.Client.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{id}");
            if (Step(workflow, stepId).GetProperty("state").GetString() is "succeeded" or "dead" or "cancelled" or "expired")
            {
                return workflow;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Step {stepId} of workflow {id} did not end in time; the workflow is: {workflow}");
            }
            await Task.Delay(25);
        }
    }

    [Fact]
    public async Task A_batchs_on_complete_runs_after_every_member_ended_whatever_the_outcomes()
    {
        var id = await CreateAsync("""
            {"batch": {"tasks": [
              {"task": "conveyor.sleep", "args": {"ms": -1}, "maxAttempts": 1}, {"task": "conveyor.sleep", "args": {"ms": 200}}, {"task": "conveyor.noop"}],
              "onSuccess": {"task": "conveyor.noop"}, "onComplete": {"task": "conveyor.noop"}}}
            """);
        var workflow = await WaitFinishedAsync(id);
        Assert.Equal("failed", workflow.GetProperty("state").GetString());
        var complete = Step(workflow, "complete");
        Assert.Equal("succeeded", complete.GetProperty("state").GetString());
        Assert.Equal("allEnded", complete.GetProperty("runWhen").GetString());
        Assert.Equal("allSucceeded", Step(workflow, "0").GetProperty("runWhen").GetString());
        Assert.Equal(["0", "1", "2"], complete.GetProperty("after").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("dead", Step(workflow, "0").GetProperty("state").GetString());
        Assert.Equal("cancelled", Step(workflow, "callback").GetProperty("state").GetString());
        var started = complete.GetProperty("startedAt").GetDateTimeOffset();
        foreach (var member in new[] { "0", "1", "2" })
        {
            Assert.True(started >= Step(workflow, member).GetProperty("finishedAt").GetDateTimeOffset(), member);
        }
    }

    [Fact]
    public async Task Under_stop_a_batchs_on_complete_is_spared_and_runs_after_the_running_members_ended()
    {
        var id = await CreateAsync("""
            {"onFailure": "stop", "batch": {"tasks": [
              {"task": "conveyor.sleep", "args": {"ms": 300}}, {"task": "conveyor.sleep", "args": {"ms": -1}, "maxAttempts": 1}],
              "onComplete": {"task": "conveyor.noop"}}}
            """);
        var workflow = await WaitStepEndedAsync(id, "complete");
        Assert.Equal("failed", workflow.GetProperty("state").GetString());
        Assert.Equal("dead", Step(workflow, "1").GetProperty("state").GetString());
        var complete = Step(workflow, "complete");
        Assert.Equal("succeeded", complete.GetProperty("state").GetString());
        var slow = Step(workflow, "0");
        Assert.Contains(slow.GetProperty("state").GetString(), new[] { "succeeded", "cancelled" });
        Assert.True(complete.GetProperty("startedAt").GetDateTimeOffset() >= slow.GetProperty("finishedAt").GetDateTimeOffset());
    }

    [Fact]
    public async Task A_failed_step_fails_the_workflow_and_cancels_what_runs_after_it()
    {
        var id = await CreateAsync("""
            {"steps": [{"id": "bad", "task": "conveyor.sleep", "args": {"ms": -1}}, {"id": "next", "task": "conveyor.noop", "after": ["bad"]}]}
            """);
        var workflow = await WaitFinishedAsync(id);
        Assert.Equal("failed", workflow.GetProperty("state").GetString());
        Assert.Equal("dead", Step(workflow, "bad").GetProperty("state").GetString());
        Assert.Contains("ms must be 0 or more", Step(workflow, "bad").GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("cancelled", Step(workflow, "next").GetProperty("state").GetString());

        // A step is retried with its workflow, not alone (its second end would count twice toward what waits for it):
        // one task's retry answers 409 naming the workflow, and a bulk retry passes the step by.
        var stepTask = Step(workflow, "bad").GetProperty("taskId").GetGuid();
        using var alone = await Server.Client.PostAsync($"/api/v1/tasks/{stepTask}/retry", null);
        var problem = await alone.Content.ReadAsStringAsync();
        Assert.True(alone.StatusCode == HttpStatusCode.Conflict, problem);
        Assert.Contains($"workflow {id}", problem, StringComparison.Ordinal);
        using var bulk = await Server.PostJsonAsync("/api/v1/tasks/retry", $$"""{"state": "dead", "task": "conveyor.sleep", "queue": "default"}""");
        Assert.Equal(HttpStatusCode.OK, bulk.StatusCode);
        Assert.Equal("dead", (await Server.GetTaskAsync(stepTask)).GetProperty("state").GetString());
    }

    [Fact]
    public async Task Under_continue_the_other_branches_run_and_the_error_step_runs_once()
    {
        var id = await CreateAsync("""
            {"onFailure": "continue", "onError": {"id": "alert", "task": "conveyor.noop"}, "steps": [
              {"id": "bad", "task": "conveyor.sleep", "args": {"ms": -1}},
              {"id": "skipped", "task": "conveyor.noop", "after": ["bad"]},
              {"id": "good", "task": "conveyor.sleep", "args": {"ms": 50}},
              {"id": "then", "task": "conveyor.noop", "after": ["good"], "onFailure": "stop"}]}
            """);
        var workflow = await WaitFinishedAsync(id);
        Assert.Equal("failed", workflow.GetProperty("state").GetString());
        Assert.Equal("dead", Step(workflow, "bad").GetProperty("state").GetString());
        Assert.Equal("cancelled", Step(workflow, "skipped").GetProperty("state").GetString());
        Assert.Equal("succeeded", Step(workflow, "then").GetProperty("state").GetString());
        Assert.Equal("stop", Step(workflow, "then").GetProperty("onFailure").GetString());
        Assert.Equal("continue", Step(workflow, "good").GetProperty("onFailure").GetString());
        var alert = Step(workflow, "alert");
        Assert.True(alert.GetProperty("onError").GetBoolean());
        Assert.False(Step(workflow, "good").TryGetProperty("onError", out _));
        // The workflow ended once nothing of it was active: its error step had run.
        Assert.Equal("succeeded", alert.GetProperty("state").GetString());
    }

    [Fact]
    public async Task Cancel_stops_a_running_workflow_and_its_steps_that_wait()
    {
        var id = await CreateAsync("""
            {"steps": [{"id": "long", "task": "conveyor.sleep", "args": {"ms": 60000}}, {"id": "next", "task": "conveyor.noop", "after": ["long"]}]}
            """);
        using var cancel = await Server.Client.PostAsync($"/api/v1/workflows/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        var workflow = await WaitFinishedAsync(id);
        Assert.Equal("cancelled", workflow.GetProperty("state").GetString());
        Assert.Equal("cancelled", Step(workflow, "next").GetProperty("state").GetString());
        // The running step's token is cancelled: it ends cancelled, long before its minute.
        await Server.WaitForStateAsync(Step(workflow, "long").GetProperty("taskId").GetGuid(), "cancelled");
        using var again = await Server.Client.PostAsync($"/api/v1/workflows/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        using var unknown = await Server.Client.GetAsync($"/api/v1/workflows/{Guid.NewGuid()}");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Theory]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop", "after": ["b"]}, {"id": "b", "task": "conveyor.noop", "after": ["a"]}]}""", "steps[0].after", "is in a cycle")]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop", "after": ["nope"]}]}""", "steps[0].after", "step 'a' runs after 'nope'")]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop"}, {"id": "a", "task": "conveyor.noop"}]}""", "steps[1].id", "step 'a' is defined twice")]
    [InlineData("""{"steps": [{"id": "a", "task": "no.such.task"}]}""", "steps[0].task", "step 'a': unknown task 'no.such.task'")]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop", "dealy": "PT1S"}]}""", "steps[0].dealy", "not a field of a task")]
    [InlineData("""{"steps": [{"task": "conveyor.noop"}]}""", "steps[0].id", "is required")]
    [InlineData("""{"flow": []}""", "flow", "not a field of a workflow")]
    [InlineData("""{"batch": {"tasks": [{"task": "conveyor.noop"}], "onCompleted": {"task": "conveyor.noop"}}}""", "batch.onCompleted", "not a field of a batch")]
    [InlineData("""{"batch": {"tasks": [{"task": "conveyor.noop"}], "onComplete": [{"task": "conveyor.noop"}]}}""", "batch.onComplete", "must be a JSON object")]
    [InlineData("""{"batch": {"tasks": [{"task": "conveyor.noop"}], "onComplete": {"task": "conveyor.noop", "qeue": "x"}}}""", "batch.onComplete.qeue", "not a field of a task")]
    [InlineData("""{"batch": {"tasks": [{"task": "conveyor.noop"}], "onComplete": {"args": {}}}}""", "batch.onComplete.task", "required")]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop"}, {"id": "b", "task": "conveyor.noop", "after": ["a"], "runWhen": "always"}]}""", "steps[1].runWhen", "must be \"allSucceeded\"")]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop", "runWhen": "allEnded"}]}""", "steps[0].runWhen", "runs after no other step")]
    [InlineData("""{"batch": [{"task": "conveyor.noop"}]}""", "batch", "must be an object {\"tasks\"")]
    [InlineData("""{"batch": {"tasks": [{"task": "no.such.task"}]}}""", "batch.tasks[0].task", "unknown task 'no.such.task'")]
    [InlineData("""{"batch": {"tasks": [{"task": "conveyor.noop"}], "onSuccess": {"task": "conveyor.noop", "qeue": "x"}}}""", "batch.onSuccess.qeue", "not a field of a task")]
    [InlineData("""{"group": [{"task": "conveyor.noop"}], "batch": {"tasks": [{"task": "conveyor.noop"}]}}""", "steps", "give one of steps, chain, group, chord or batch")]
    [InlineData("""{"onFailure": "ignore", "steps": [{"id": "a", "task": "conveyor.noop"}]}""", "onFailure", "must be \"stop\"")]
    [InlineData("""{"steps": [{"id": "a", "task": "conveyor.noop", "onFailure": 1}]}""", "steps[0].onFailure", "must be \"stop\"")]
    [InlineData("""{"onError": {"id": "a", "task": "conveyor.noop"}, "steps": [{"id": "a", "task": "conveyor.noop"}]}""", "onError.id", "has the id of steps[0]")]
    [InlineData("""{"onError": {"task": "conveyor.noop"}, "steps": [{"id": "a", "task": "conveyor.noop", "after": ["error"]}]}""", "steps[0].after", "runs after the error step 'error'")]
    [InlineData("""{"onError": {"task": "conveyor.noop", "after": ["a"]}, "steps": [{"id": "a", "task": "conveyor.noop"}]}""", "onError.after", "after no step")]
    public async Task Bad_input_is_refused_with_422_naming_the_step(string body, string field, string message)
    {
        using var response = await Server.PostJsonAsync("/api/v1/workflows", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.UnprocessableEntity, $"{(int)response.StatusCode}: {text}");
        var errors = JsonDocument.Parse(text).RootElement.GetProperty("errors");
        Assert.True(errors.TryGetProperty(field, out var messages), text);
        Assert.Contains(messages.EnumerateArray(), m => m.GetString()!.Contains(message, StringComparison.Ordinal));
    }
}
