using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>
/// Process-level proof of a workflow's crash-safety (issue 12, item 8): a DAG of 1,000 steps runs on <c>conveyor worker</c>
/// processes that are killed with SIGKILL over and over. No step is lost (the workflow and every step succeed) and none
/// runs before its inputs: each step's first run starts after a run of every step it waits for has ended. The steps are
/// <c>http.request</c> calls to a <see cref="CallRecorder"/> in this process, which sees every run.
/// </summary>
public sealed class WorkflowKillLoopTests : IDisposable
{
    private const int Layers = 10;
    private const int Width = 100;
    private const int Steps = Layers * Width;
    private const int MinKills = 5;
    // New steps run between kills: often enough for MinKills before the last layer. No kill while a running step was
    // running at two kills already: three interruptions make a step dead (LeaseRules.MaxInterruptions, as a poison task),
    // and kills paced by calls alone let a slow machine (CI under load) interrupt the same re-run steps three times.
    private const int KillEveryNewSteps = 30;
    private const int Slots = 2;
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    /// <summary>Step (layer, i) waits for (layer − 1, i) and (layer − 1, 7i + 3 mod width): joins across the layer.</summary>
    private static int[] DependenciesOf(int marker)
    {
        var (layer, i) = (marker / Width, marker % Width);
        return layer == 0 ? [] : new[] { ((layer - 1) * Width) + i, ((layer - 1) * Width) + ((7 * i) + 3) % Width }.Distinct().ToArray();
    }

    private static string StepId(int marker) => "s" + marker.ToString(CultureInfo.InvariantCulture);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    [InlineData("redis")]
    public Task A_thousand_step_dag_loses_no_step_and_runs_none_before_its_inputs_while_workers_are_killed(string backend) =>
        WithBackendEnvironmentAsync(backend, _folder, "cvwfkill", async variables =>
        {
            var clock = Stopwatch.StartNew();
            // Each call held 150 ms: on a quiet machine a 60 ms hold let Redis finish the DAG in 12 s with only 4 kills.
            await using var recorder = await CallRecorder.StartAsync(Steps, TimeSpan.FromMilliseconds(150));
            var environment = ProcessEnvironment(new Dictionary<string, string>(variables) { ["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "127.0.0.1" });
            using var server = await ServerProcess.StartAsync(_folder, new Dictionary<string, string>(environment) { ["PORT"] = "0" }, "--no-worker");
            using var http = server.CreateClient(TimeSpan.FromSeconds(30));
            var workers = new ConveyorProcess[Slots];
            var kills = 0;
            try
            {
                for (var slot = 0; slot < Slots; slot++)
                {
                    workers[slot] = ConveyorProcess.Start(_folder, environment, "worker");
                }
                var body = JsonSerializer.Serialize(new
                {
                    name = "kill-loop",
                    steps = Enumerable.Range(0, Steps).Select(marker => new
                    {
                        id = StepId(marker),
                        task = "http.request",
                        args = new { method = "POST", url = recorder.Url.ToString(), body = marker.ToString(CultureInfo.InvariantCulture) },
                        after = DependenciesOf(marker).Select(StepId).ToArray(),
                    }),
                });
                using var created = await http.PostAsync("/api/v1/workflows", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
                Assert.True(created.StatusCode == HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
                var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();

                // Kill a worker (alternating slots) whenever another KillEveryCalls calls were made, and start a new one in its place,
                // until the workflow ends; at least MinKills while it runs.
                var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(240);
                var lastKillDistinct = 0L;
                // Per step, the kills at which its handler was running (a call of it in the recorder): a step that was, and may
                // have been interrupted, twice holds up the next kill. Not the steps' "running" state: that includes steps
                // whose worker is already dead until their lease comes back, which held kills up until the DAG was done.
                var inFlightAtKills = new int[Steps];
                var lastRead = Stopwatch.StartNew();
                var lastHeldUp = Stopwatch.StartNew();
                while (lastRead.ElapsedMilliseconds < 500 || await StateAsync(http, id) == "running")
                {
                    if (lastRead.ElapsedMilliseconds >= 500)
                    {
                        // Each read of the workflow reads its 1,000 steps: twice a second at most.
                        lastRead.Restart();
                    }
                    Assert.True(DateTime.UtcNow < deadline, $"the workflow did not finish in time: {recorder.Distinct} of {Steps} steps ran, {kills} kills");
                    if (recorder.Distinct - lastKillDistinct >= KillEveryNewSteps && recorder.Distinct < Steps - Width)
                    {
                        var inFlight = recorder.InFlight(TimeSpan.FromMilliseconds(100));
                        // The recorder sees calls, not attempts: an attempt whose call has not reached it yet, or whose
                        // outcome is still being written (longer than 100 ms under load), is interrupted by a kill
                        // unseen (a CI run had a step dead after three). So the server's own count is read too, just
                        // before the kill: none while a step runs its last attempt before MaxInterruptions.
                        // (Read at most four times a second while it holds kills up: each read is of 1,000 steps.)
                        var mayKill = inFlight.All(marker => inFlightAtKills[marker] < 2) && lastHeldUp.ElapsedMilliseconds >= 250;
                        if (mayKill && await AnyStepOnItsLastInterruptionAsync(http, id))
                        {
                            mayKill = false;
                            lastHeldUp.Restart();
                        }
                        if (mayKill)
                        {
                            var slot = kills % Slots;
                            workers[slot].KillHard();
                            workers[slot].Dispose();
                            lastKillDistinct = recorder.Distinct;
                            foreach (var marker in inFlight)
                            {
                                inFlightAtKills[marker]++;
                            }
                            kills++;
                            workers[slot] = ConveyorProcess.Start(_folder, environment, "worker");
                        }
                    }
                    await Task.Delay(50);
                }
                var workflow = await http.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{id}");
                var unfinished = workflow.GetProperty("steps").EnumerateArray()
                    .Where(s => s.GetProperty("state").GetString() is not ("succeeded" or "cancelled"))
                    .Select(s => $"{s.GetProperty("id").GetString()}: {s.GetProperty("state").GetString()} after {s.GetProperty("attempts").GetInt32()} attempts ({s.GetProperty("error")})");
                Assert.True(workflow.GetProperty("state").GetString() == "succeeded",
                    $"the workflow is {workflow.GetProperty("state").GetString()}; steps that did not succeed: {string.Join("; ", unfinished)}");
                Assert.All(workflow.GetProperty("steps").EnumerateArray(), s => Assert.Equal("succeeded", s.GetProperty("state").GetString()));
            }
            catch
            {
                Console.WriteLine($"workflow kill loop ({backend}) failed after {kills} kills, {recorder.Total} calls, {clock.Elapsed.TotalSeconds:F0} s; "
                    + $"server log: {LogSummary(server.Process.Output + server.Process.Error)}");
                throw;
            }
            finally
            {
                foreach (var worker in workers)
                {
                    worker?.Dispose();
                }
            }
            Assert.True(kills >= MinKills, $"only {kills} kills while the workflow ran");
            Assert.Equal(0, recorder.Unknown);
            Assert.True(recorder.Overlaps == 0, $"{recorder.Overlaps} calls started while another call of the same step ran");
            var reruns = 0;
            for (var marker = 0; marker < Steps; marker++)
            {
                var calls = recorder.CallsOf(marker);
                Assert.True(calls.Count > 0, $"step {StepId(marker)} succeeded without running");
                reruns += calls.Count - 1;
                foreach (var dependency in DependenciesOf(marker))
                {
                    var ended = recorder.CallsOf(dependency).Where(c => c.End != long.MaxValue).Select(c => c.End).DefaultIfEmpty(long.MaxValue).Min();
                    Assert.True(ended <= calls[0].Start, $"step {StepId(marker)} started before a run of {StepId(dependency)}, which it waits for, had ended");
                }
            }
            Console.WriteLine($"Workflow kill loop ({backend}): {Steps} steps in {Layers} layers, {kills} SIGKILLs of workers ({Slots} at a time), "
                + $"{recorder.Total} runs ({reruns} re-runs of steps whose worker was killed), none before its inputs, none lost; {clock.Elapsed.TotalSeconds:F0} s");
        });

    /// <summary>Whether a step is running an attempt that a kill would make its <see cref="Conveyor.Backends.LeaseRules.MaxInterruptions"/>th
    /// interrupted one (every earlier attempt of these steps was interrupted: their calls always succeed).</summary>
    private static async Task<bool> AnyStepOnItsLastInterruptionAsync(HttpClient http, Guid id) =>
        (await http.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{id}")).GetProperty("steps").EnumerateArray()
            .Any(s => s.GetProperty("state").GetString() == "running" && s.GetProperty("attempts").GetInt32() >= Conveyor.Backends.LeaseRules.MaxInterruptions);

    private static async Task<string?> StateAsync(HttpClient http, Guid id) =>
        (await http.GetFromJsonAsync<JsonElement>($"/api/v1/workflows/{id}")).GetProperty("state").GetString();
}
