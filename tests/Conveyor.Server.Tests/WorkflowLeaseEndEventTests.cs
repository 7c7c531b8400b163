using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>
/// Process-level: a workflow step whose worker process dies (SIGKILL, by PID) until its lease runs out for the last time
/// (<see cref="Backends.LeaseRules.MaxInterruptions"/> interrupted attempts, whatever its <c>maxAttempts</c>) ends dead by
/// the leader's reaper, in whichever process leads: no worker raises its event. The reaper raises it, the workflow's end is
/// read and announced, and an event stream on <c>conveyor server --no-worker</c> sees the step's <c>dead</c> and the
/// workflow's <c>failed</c>, once.
/// </summary>
public sealed class WorkflowLeaseEndEventTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    [InlineData("redis")]
    public Task A_step_whose_worker_is_killed_until_its_lease_runs_out_for_the_last_time_is_announced_dead_and_its_workflow_failed(string backend) =>
        WithBackendEnvironmentAsync(backend, _folder, "cvwflease", async variables =>
        {
            // The step POSTs to a recorder here, which holds the call: a call that arrived is a handler that started.
            await using var recorder = await CallRecorder.StartAsync(1, TimeSpan.FromSeconds(15));
            var environment = ProcessEnvironment(new Dictionary<string, string>(variables) { ["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "127.0.0.1" });
            using var server = await ServerProcess.StartAsync(_folder, new Dictionary<string, string>(environment) { ["PORT"] = "0" }, "--no-worker");
            using var http = server.CreateClient(TimeSpan.FromSeconds(30));
            await using var stream = await SseClient.OpenAsync(server.Url);

            var body = JsonSerializer.Serialize(new
            {
                name = "lease-ends",
                steps = new object[]
                {
                    new { id = "a", task = "http.request", args = new { method = "POST", url = recorder.Url.ToString(), body = "0" }, maxAttempts = 1 },
                    new { id = "b", task = "conveyor.noop", after = new[] { "a" } },
                },
            });
            using var created = await http.PostAsync("/api/v1/workflows", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            var createdBody = await created.Content.ReadAsStringAsync();
            Assert.True(created.StatusCode == HttpStatusCode.Created, createdBody);
            var workflowId = JsonDocument.Parse(createdBody).RootElement.GetProperty("id").GetString()!;
            var workflow = await http.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{workflowId}");
            var stepTask = workflow.GetProperty("steps").EnumerateArray().Single(s => s.GetProperty("id").GetString() == "a")
                .GetProperty("taskId").GetGuid();

            // A worker runs the step and is killed while its handler runs; the lease runs out and the reaper takes it back
            // (queued) or, at the last interrupted attempt, ends it (dead).
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(4);
            var kills = 0;
            var task = default(JsonElement);
            while (task.ValueKind == JsonValueKind.Undefined || task.GetProperty("state").GetString() != "dead")
            {
                Assert.True(DateTime.UtcNow < deadline, $"step a is not dead after {kills} kills: {task}");
                using var worker = ConveyorProcess.Start(_folder, environment, "worker");
                var calls = kills + 1;
                await WaitUntilAsync(() => recorder.CallsOf(0).Count == calls, Deadline, () => $"step a to run on worker process {worker.Id}: {task}; server log: "
                    + $"{LogSummary(server.Process.Output + server.Process.Error)}; worker log: {LogSummary(worker.Output + worker.Error)}");
                ConveyorProcess.SignalProcess(worker.Id, "KILL");
                kills++;
                await WaitUntilAsync(async () =>
                {
                    task = await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{stepTask}");
                    return task.GetProperty("state").GetString() is "queued" or "dead";
                }, Deadline, () => $"step a's lease to run out after kill {kills}: {task}; server log: {LogSummary(server.Process.Output + server.Process.Error)}");
            }
            // The first lease records its start in the background: a kill between the handler's call and that write is a
            // lapse of a task that never started (no attempt spent, no interruption, no error). After one lapse every lease
            // records its start before the handler runs (Lease.RecordStartFirst), so at most one kill more is needed; the
            // interruptions and their errors are exact.
            Assert.InRange(kills, Backends.LeaseRules.MaxInterruptions, Backends.LeaseRules.MaxInterruptions + 1);
            Assert.Equal(Backends.LeaseRules.MaxInterruptions, task.GetProperty("errors").GetArrayLength());
            Assert.Equal("Conveyor.LeaseExpired", task.GetProperty("error").GetProperty("type").GetString());

            await stream.WaitForAsync(e => e.Event == "task" && e.TaskId == stepTask && e.Type == "dead", Deadline,
                $"step a's dead event ({LogSummary(server.Process.Output + server.Process.Error)})");
            await stream.WaitForAsync(e => e.Event == "workflow" && e.Get("workflowId") == workflowId && e.Type == "failed", Deadline,
                $"workflow {workflowId}'s failed event");
            stream.AssertNoProtocolErrors();
            var dead = Assert.Single(stream.EventsOf(stepTask), e => e.Type == "dead");
            Assert.Equal(workflowId, dead.Get("workflowId"));
            Assert.Equal("a", dead.Get("stepId"));
            Assert.Equal("dead", dead.Get("state"));
            var ends = stream.Messages.Where(e => e.Event == "workflow" && e.Get("workflowId") == workflowId && e.Type is "failed" or "succeeded" or "cancelled").ToList();
            Assert.True(ends.Count == 1, string.Join(" | ", ends));
            Assert.Equal("lease-ends", ends[0].Get("name"));
            var stored = await http.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{workflowId}");
            Assert.Equal("failed", stored.GetProperty("state").GetString());
            Assert.Equal(stored.GetProperty("finishedAt").GetDateTimeOffset(), DateTimeOffset.Parse(ends[0].Get("at")!, System.Globalization.CultureInfo.InvariantCulture));
        });
}
