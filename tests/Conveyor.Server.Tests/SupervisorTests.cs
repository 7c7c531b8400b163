using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Conveyor.Backends;
using Conveyor.TestBackends;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>
/// Process-level, with real processes and signals, on SQLite (the kill, the hard limit and the drain on PostgreSQL too): the supervisor (<c>conveyor worker --processes N</c> and the
/// SupervisedWorker sample, which hosts its own handlers) restarts children that are killed or crash and hands back
/// their leases at once; recycling by task count and by memory loses nothing and runs nothing twice; the hard time limit
/// ends the child and records the attempt; SIGTERM drains within the graceful timeout and a second signal stops at once.
/// Leases last a minute here, so a task that comes back within seconds came back because its lease was handed back.
/// </summary>
public sealed partial class SupervisorTests : IDisposable
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(60);
    private readonly string _folder = TempFolder.Create();
    private string DatabasePath => Path.Combine(_folder, "store.db");
    private TestStore? _store;

    /// <summary>Opens the store of <paramref name="kind"/> (sqlite, postgres) that the processes started next use.</summary>
    private async Task<TestStore> OpenStoreAsync(string kind = "sqlite") => _store = await TestStore.OpenAsync(kind, _folder);

    public void Dispose() => TempFolder.Delete(_folder);

    /// <summary>Long leases, so that only a hand-back brings tasks back quickly; a short leader lease and fetch wait, so
    /// that a killed leader or a missed wake-up costs little.</summary>
    private Dictionary<string, string> Environment(bool sample = false)
    {
        var environment = new Dictionary<string, string>
        {
            ["LOG_LEVEL"] = "information",
            ["Logging__LogLevel__Default"] = "Information",
            ["CONVEYOR_WORKER__LEASE_DURATION"] = Lease.ToString("c", CultureInfo.InvariantCulture),
            ["CONVEYOR_WORKER__HEARTBEAT_INTERVAL"] = "00:00:01",
            ["CONVEYOR_WORKER__FETCH_WAIT"] = "00:00:00.250",
            ["CONVEYOR_SCHEDULER__REAPER_INTERVAL"] = "00:00:01",
            ["CONVEYOR_SCHEDULER__LEADER_LEASE"] = "00:00:03",
            ["CONVEYOR_SCHEDULER__PROMOTION_INTERVAL"] = "00:00:00.250",
        };
        if (sample)
        {
            // The sample reads the host's usual sources: Conveyor__Worker__… rather than CONVEYOR_WORKER__….
            foreach (var (name, value) in environment.Where(e => e.Key.StartsWith("CONVEYOR_", StringComparison.Ordinal)).ToList())
            {
                environment.Remove(name);
                var key = string.Join("__", name["CONVEYOR_".Length..].Split("__").Select(Pascal));
                environment["Conveyor__" + key] = value;
            }
            environment["Sample__Database"] = DatabasePath;
            environment["Sample__RunLog"] = RunLogPath;
        }
        else
        {
            environment["DATABASE_URL"] = _store?.DatabaseUrl ?? "sqlite:///" + DatabasePath;
        }
        return environment;
    }

    private static string Pascal(string snake) =>
        string.Concat(snake.Split('_').Select(part => part.Length == 0 ? "" : char.ToUpperInvariant(part[0]) + part[1..].ToLowerInvariant()));

    private string RunLogPath => Path.Combine(_folder, "runs.log");

    private ConveyorProcess StartConveyorWorker(params string[] args) =>
        ConveyorProcess.Start(_folder, Environment(), ["worker", .. args]);

    private ConveyorProcess StartSample(params string[] args) =>
        ConveyorProcess.StartProgram(ConveyorProcess.SampleDll("SupervisedWorker"), _folder, Environment(sample: true), args);

    [GeneratedRegex(@"Worker process (\d+) started: pid (\d+), worker (\S+)")]
    private static partial Regex ChildStarted();

    /// <summary>Waits for the supervisor's line about the <paramref name="nth"/> child start (1-based, over all slots).</summary>
    private static async Task<(int ProcessId, string WorkerId)> WaitForChildAsync(ConveyorProcess supervisor, int nth, TimeSpan timeout)
    {
        await WaitUntilAsync(() => ChildStarted().Count(supervisor.Output) >= nth, timeout, () => $"child start {nth}. Output: {supervisor.Output}");
        var match = ChildStarted().Matches(supervisor.Output)[nth - 1];
        return (int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture), match.Groups[3].Value);
    }

    /// <summary>Waits until the worker in <paramref name="workerId"/>'s process announced it runs (so that it migrated and fetches).</summary>
    private static Task WaitForWorkerAsync(ConveyorProcess supervisor, string workerId, TimeSpan timeout) =>
        WaitUntilAsync(() => supervisor.Output.Contains($"Worker {workerId} started", StringComparison.Ordinal), timeout,
            () => $"worker {workerId} to start. Output: {supervisor.Output}");

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Child_killed_with_SIGKILL_is_restarted_and_its_tasks_come_back_at_once(string backend)
    {
        await using var store = await OpenStoreAsync(backend);
        using var supervisor = StartConveyorWorker("--processes", "1", "--concurrency", "4");
        var (childPid, childId) = await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, childId, TimeSpan.FromSeconds(60));

        // Four run and four wait in the prefetch buffer: both kinds must come back.
        var ids = await store.EnqueueAsync("conveyor.sleep", """{"ms":3000}""", 8, maxAttempts: 3);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Running && t.WorkerId == childId),
            TimeSpan.FromSeconds(30), "the child to lease every task");
        var killedAt = Stopwatch.StartNew();
        ConveyorProcess.SignalProcess(childPid, "KILL");

        var (_, secondId) = await WaitForChildAsync(supervisor, 2, TimeSpan.FromSeconds(30));
        Assert.NotEqual(childId, secondId);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Succeeded),
            TimeSpan.FromSeconds(40), () => $"every task to succeed. Output: {supervisor.Output}");
        // Without the hand-back they would have waited out the 60 s lease.
        Assert.True(killedAt.Elapsed < Lease / 2, $"the tasks took {killedAt.Elapsed} after the kill");
        var tasks = await store.GetAsync(ids);
        Assert.All(tasks.Values, t => Assert.Equal(secondId, t.WorkerId));
        Assert.All(tasks.Values, t => Assert.InRange(t.Attempts, 1, 2));
        Assert.Matches(@"Worker process 1 \(pid \d+, worker [^)]+\) was killed by signal 9 \(SIGKILL\) after [\d.]+ s; \d+ leases handed back; restart 1 in",
            supervisor.Output);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_step_whose_last_interrupted_attempt_a_hand_back_ends_is_announced_dead_with_its_workflow_on_the_servers_event_stream(string backend)
    {
        await using var store = await OpenStoreAsync(backend);
        // The step POSTs to a recorder here, which holds the call: a call that arrived is a handler that started.
        await using var recorder = await CallRecorder.StartAsync(1, TimeSpan.FromSeconds(15));
        var environment = Environment();
        environment["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "127.0.0.1";
        using var server = await ServerProcess.StartAsync(_folder, new Dictionary<string, string>(environment) { ["PORT"] = "0" }, "--no-worker");
        using var http = server.CreateClient(TimeSpan.FromSeconds(30));
        await using var stream = await SseClient.OpenAsync(server.Url);
        var body = JsonSerializer.Serialize(new
        {
            name = "handed-back",
            steps = new object[]
            {
                // maxAttempts 1 does not bound interruptions: the step ends dead at its third (LeaseRules.MaxInterruptions).
                new { id = "a", task = "http.request", args = new { method = "POST", url = recorder.Url.ToString(), body = "0" }, maxAttempts = 1 },
                new { id = "b", task = "conveyor.noop", after = new[] { "a" } },
            },
        });
        using var created = await http.PostAsync("/api/v1/workflows", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        var createdBody = await created.Content.ReadAsStringAsync();
        Assert.True(created.StatusCode == System.Net.HttpStatusCode.Created, createdBody);
        var workflowId = JsonDocument.Parse(createdBody).RootElement.GetProperty("id").GetString()!;
        using var workflow = JsonDocument.Parse(await http.GetStringAsync($"/api/v1/workflows/{workflowId}"));
        var step = workflow.RootElement.GetProperty("steps").EnumerateArray().Single(s => s.GetProperty("id").GetString() == "a").GetProperty("taskId").GetGuid();

        using var supervisor = ConveyorProcess.Start(_folder, environment, "worker", "--processes", "1", "--concurrency", "1");
        var killedAt = Stopwatch.StartNew();
        var lastChild = "";
        var kills = 0;
        TaskRecord? seen = null;
        while (seen?.State != TaskState.Dead)
        {
            Assert.True(kills <= LeaseRules.MaxInterruptions, $"step a is not dead after {kills} kills: {seen?.State}");
            var (childPid, childId) = await WaitForChildAsync(supervisor, kills + 1, TimeSpan.FromSeconds(60));
            var calls = kills + 1;
            await WaitUntilAsync(() => recorder.CallsOf(0).Count == calls, TimeSpan.FromSeconds(60),
                () => $"child {calls} to run step a; it is {seen?.State}, worker {seen?.WorkerId}. Output: {supervisor.Output} Errors: {supervisor.Error}");
            ConveyorProcess.SignalProcess(childPid, "KILL");
            killedAt.Restart();
            kills++;
            lastChild = childId;
            // Back (queued, or already taken by the next child) or ended: by the supervisor's hand-back, since the lease
            // (60 s) does not run out here.
            await WaitUntilAsync(async () =>
                {
                    seen = (await store.GetAsync([step]))[step];
                    return seen.State != TaskState.Running || seen.WorkerId != childId;
                },
                Lease / 2, () => $"the killed child {kills}'s lease to be handed back. Output: {supervisor.Output} Errors: {supervisor.Error}");
        }
        Assert.True(killedAt.Elapsed < Lease / 2, $"step a ended {killedAt.Elapsed} after the last kill");
        // The first lease records its start beside the handler: a kill between the call and that write is a lapse (no
        // attempt spent, no interruption), after which every lease records its start before its handler runs. So one kill
        // more at most; the interruptions are exact.
        Assert.InRange(kills, LeaseRules.MaxInterruptions, LeaseRules.MaxInterruptions + 1);
        Assert.Equal(LeaseRules.MaxInterruptions, seen!.Errors.Count);

        // The hand-back process sent the step's event and its workflow's end; the server's bridge passed them on.
        var dead = await stream.WaitForAsync(e => e.Event == "task" && e.TaskId == step && e.Type == "dead", TimeSpan.FromSeconds(30),
            $"step a's dead event. Errors: {supervisor.Error}");
        Assert.Equal(workflowId, dead.Get("workflowId"));
        Assert.Equal("a", dead.Get("stepId"));
        Assert.Equal(lastChild, dead.Get("origin"));
        await stream.WaitForAsync(e => e.Event == "workflow" && e.Get("workflowId") == workflowId && e.Type == "failed", TimeSpan.FromSeconds(30),
            $"workflow {workflowId}'s failed event");
        stream.AssertNoProtocolErrors();
        Assert.Single(stream.EventsOf(step), e => e.Type == "dead");
        var ends = stream.Messages.Where(e => e.Event == "workflow" && e.Get("workflowId") == workflowId && e.Type is "failed" or "succeeded" or "cancelled").ToList();
        Assert.True(ends.Count == 1, string.Join(" | ", ends));
        Assert.Equal("handed-back", ends[0].Get("name"));
        using var stored = JsonDocument.Parse(await http.GetStringAsync($"/api/v1/workflows/{workflowId}"));
        Assert.Equal("failed", stored.RootElement.GetProperty("state").GetString());
        Assert.Equal(stored.RootElement.GetProperty("finishedAt").GetDateTimeOffset(), DateTimeOffset.Parse(ends[0].Get("at")!, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task A_server_without_the_handler_checks_arguments_against_the_schema_of_a_worker_in_another_process()
    {
        var environment = Environment();
        environment["PORT"] = "0";
        using var server = await ServerProcess.StartAsync(_folder, environment, "--no-worker");
        using var worker = StartSample();
        await WaitUntilAsync(() => WorkerStarted(worker), TimeSpan.FromSeconds(60), () => $"the sample's worker to start. Output: {worker.Output}");
        using var http = server.CreateClient();

        // The server has no handler for sample.leak: it learns the name and the schema of its arguments (LeakArgs: an
        // integer mb) from the worker's heartbeat, read at most once a second.
        string body = "";
        var status = System.Net.HttpStatusCode.OK;
        await WaitUntilAsync(async () =>
        {
            using var response = await http.PostAsync("/api/v1/tasks", Json("""{"task": "sample.leak", "args": {"mb": "lots"}}"""));
            body = await response.Content.ReadAsStringAsync();
            status = response.StatusCode;
            return !body.Contains("unknown task", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(30), () => $"the server to learn the worker's tasks; last answer: {body}. Worker: {worker.Output}");
        Assert.True(status == System.Net.HttpStatusCode.UnprocessableEntity, $"{(int)status}: {body}");
        using (var problem = System.Text.Json.JsonDocument.Parse(body))
        {
            var errors = problem.RootElement.GetProperty("errors");
            Assert.Equal(["args.mb"], errors.EnumerateObject().Select(e => e.Name));
            Assert.Contains("an integer", errors.GetProperty("args.mb")[0].GetString(), StringComparison.Ordinal);
        }

        using var good = await http.PostAsync("/api/v1/tasks", Json("""{"task": "sample.record", "args": {"ms": "5"}}"""));
        var created = await good.Content.ReadAsStringAsync();
        Assert.True(good.StatusCode == System.Net.HttpStatusCode.Created, created);
        var id = System.Text.Json.JsonDocument.Parse(created).RootElement.GetProperty("id").GetString();
        await WaitUntilAsync(async () =>
        {
            using var task = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"/api/v1/tasks/{id}"));
            return task.RootElement.GetProperty("state").GetString() == "succeeded";
        }, TimeSpan.FromSeconds(30), () => $"task {id} to succeed in the worker process. Worker: {worker.Output}");

        static bool WorkerStarted(ConveyorProcess process) => process.Output.Contains(" started on queues ", StringComparison.Ordinal);
        static StringContent Json(string text) => new(text, System.Text.Encoding.UTF8, "application/json");
    }

    [Fact]
    public async Task Child_that_overflows_its_stack_is_restarted_and_the_poison_task_ends_dead()
    {
        await using var store = await OpenStoreAsync();
        using var supervisor = StartSample("--Conveyor:Worker:Processes=1", "--Conveyor:Worker:Concurrency=2");
        var (_, firstId) = await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, firstId, TimeSpan.FromSeconds(60));

        var poison = await store.EnqueueAsync("sample.overflow", "{}", 1, maxAttempts: 1);
        await WaitUntilAsync(() => supervisor.Output.Contains("was killed by signal 6 (SIGABRT", StringComparison.Ordinal), TimeSpan.FromSeconds(30),
            () => $"the child to die of the stack overflow. Output: {supervisor.Output}");
        await WaitForChildAsync(supervisor, 2, TimeSpan.FromSeconds(30));

        // A task that crashes every worker that runs it is not redelivered forever.
        await WaitUntilAsync(async () => (await store.GetAsync(poison)).Values.Single().State == TaskState.Dead, TimeSpan.FromSeconds(90),
            () => $"the poison task to end dead. Output: {supervisor.Output}");
        // And the restarted worker still runs work.
        var healthy = await store.EnqueueAsync("sample.record", "{}", 5, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(healthy)).Values.All(t => t.State == TaskState.Succeeded), TimeSpan.FromSeconds(30),
            () => $"the healthy tasks to succeed. Output: {supervisor.Output}");
    }

    [Fact]
    public async Task Recycling_by_task_count_loses_nothing_and_runs_nothing_twice()
    {
        await using var store = await OpenStoreAsync();
        using var supervisor = StartSample("--Conveyor:Worker:Processes=2", "--Conveyor:Worker:Concurrency=4", "--Conveyor:Worker:MaxTasksPerChild=40");
        var ids = await store.EnqueueAsync("sample.record", """{"ms":20}""", 300, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Succeeded), TimeSpan.FromSeconds(120),
            () => $"every task to succeed. Output: {supervisor.Output}");

        AssertEachRanOnce(ids);
        var recycles = Regex.Count(supervisor.Output, @"exited to be recycled \(code 75\)");
        // 300 tasks; a recycled child runs exactly 40, and the last two alive fewer: at least 6 recycles.
        Assert.True(recycles >= 6, $"{recycles} recycles. Output: {supervisor.Output}");
        Assert.Contains("replaced at once", supervisor.Output, StringComparison.Ordinal);
        // Each child recycles at its 40th finished task, and starts no 41st, however many its buffer holds: it stops
        // fetching and its handlers take no more from the buffer (64-83 runs before the recycler stopped the fetching
        // first, 61 before the handlers stopped at the count).
        Assert.All(Regex.Matches(supervisor.Output, @"recycles: (\d+) tasks finished, the limit is 40"),
            m => Assert.Equal(40, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)));
        Assert.All(Directory.GetFiles(_folder, Path.GetFileName(RunLogPath) + ".*"),
            log => Assert.True(File.ReadAllLines(log).Length <= 40, $"{log}: {File.ReadAllLines(log).Length} runs. Output: {supervisor.Output}"));
        Assert.All((await store.GetAsync(ids)).Values, t => Assert.Equal(1, t.Attempts));
    }

    [GeneratedRegex(@"Spare worker process started: pid (\d+), worker (\S+);")]
    private static partial Regex SpareStarted();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_recycling_child_hands_its_place_to_the_spare_which_fetched_nothing_while_it_waited(bool spare)
    {
        await using var store = await OpenStoreAsync();
        using var supervisor = StartConveyorWorker("--processes", "1", "--concurrency", "2", "--max-tasks-per-child", "6", "--spare-process", spare ? "true" : "false");
        var (_, firstId) = await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, firstId, TimeSpan.FromSeconds(60));
        var spareId = "";
        if (spare)
        {
            // Started once the first child's worker began, and waiting: its worker has not started.
            await WaitUntilAsync(() => SpareStarted().IsMatch(supervisor.Output), TimeSpan.FromSeconds(60), () => $"the spare. Output: {supervisor.Output}");
            spareId = SpareStarted().Match(supervisor.Output).Groups[2].Value;
            await WaitUntilAsync(() => supervisor.Output.Contains($"Worker {spareId} is its supervisor's spare", StringComparison.Ordinal),
                TimeSpan.FromSeconds(60), () => $"the spare's host to start. Output: {supervisor.Output}");
        }

        // Six tasks: the first child finishes them and recycles; four more for the child after it. maxAttempts 1: an
        // attempt lost in the hand-over would show as a task dead or never run.
        var before = await store.EnqueueAsync("conveyor.sleep", """{"ms":100}""", 6, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(before)).Values.All(t => t.State == TaskState.Succeeded), TimeSpan.FromSeconds(60),
            () => $"the first child's tasks. Output: {supervisor.Output}");
        Assert.All((await store.GetAsync(before)).Values, t => Assert.Equal(firstId, t.WorkerId));
        await WaitUntilAsync(() => supervisor.Output.Contains($"worker {firstId}) exited to be recycled (code 75)", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), () => $"the recycle. Output: {supervisor.Output}");
        var (_, secondId) = await WaitForChildAsync(supervisor, 2, TimeSpan.FromSeconds(30));
        var after = await store.EnqueueAsync("conveyor.sleep", """{"ms":100}""", 4, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(after)).Values.All(t => t.State == TaskState.Succeeded), TimeSpan.FromSeconds(60),
            () => $"the second child's tasks. Output: {supervisor.Output}");
        Assert.All((await store.GetAsync(after)).Values, t => Assert.Equal(secondId, t.WorkerId));
        Assert.All((await store.GetAsync([.. before, .. after])).Values, t => Assert.Equal(1, t.Attempts));

        if (spare)
        {
            // The spare took the place; its worker began only after the first child stopped fetching (the supervisor logs
            // that before it hands the spare its turn): it fetched nothing before.
            Assert.Equal(spareId, secondId);
            Assert.Contains($"worker {spareId} (the spare, after waiting", supervisor.Output, StringComparison.Ordinal);
            var retiring = supervisor.Output.IndexOf($"worker {firstId}) recycles: it stopped fetching", StringComparison.Ordinal);
            Assert.True(retiring >= 0, $"the first child's recycle. Output: {supervisor.Output}");
            Assert.True(supervisor.Output.IndexOf($"Worker {spareId} started on queues", StringComparison.Ordinal) > retiring,
                $"the spare's worker began before its turn. Output: {supervisor.Output}");
            // And the next spare waits in its stead.
            await WaitUntilAsync(() => SpareStarted().Count(supervisor.Output) >= 2, TimeSpan.FromSeconds(60), () => $"the next spare. Output: {supervisor.Output}");
        }
        else
        {
            Assert.DoesNotMatch(SpareStarted(), supervisor.Output);
            Assert.DoesNotContain(":spare.", secondId, StringComparison.Ordinal);
        }
        supervisor.Terminate();
        Assert.Equal(0, await supervisor.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.DoesNotContain("exited without handing back", supervisor.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Recycling_by_memory_replaces_a_leaking_child_and_loses_nothing()
    {
        await using var store = await OpenStoreAsync();
        // Celery's form: kilobytes (250 MB).
        using var supervisor = StartSample("--Conveyor:Worker:Processes=1", "--Conveyor:Worker:Concurrency=2", "--Conveyor:Worker:MaxMemoryPerChild=256000");
        // 100 ms a task, so that a child runs a few between two looks at its memory (every 200 ms), as real tasks would.
        var ids = await store.EnqueueAsync("sample.leak", """{"mb":20,"ms":100}""", 40, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Succeeded), TimeSpan.FromSeconds(120),
            () => $"every task to succeed. Output: {supervisor.Output}");

        AssertEachRanOnce(ids);
        // 800 MB leaked in all, a child recycling past 250 MB: three children at least, so two recycles (the last child
        // may be one check, 200 ms, from its own when the last task ends).
        await WaitUntilAsync(() => Regex.Count(supervisor.Output, @"exited to be recycled \(code 75\)") >= 2, TimeSpan.FromSeconds(30),
            () => $"two recycles. Output: {supervisor.Output}");
        Assert.True(Regex.Count(supervisor.Output, @"resident memory [\d.]+ MB passed the limit of 250.0 MB") >= 2, supervisor.Output);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Hard_time_limit_ends_the_child_records_the_attempt_and_hands_back_the_others(string backend)
    {
        await using var store = await OpenStoreAsync(backend);
        // Concurrency 1: the hung task runs, the others wait in the child's prefetch buffer.
        using var supervisor = StartConveyorWorker("--processes", "1", "--concurrency", "1", "--time-limit", "2", "--soft-time-limit", "1");
        var (_, childId) = await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, childId, TimeSpan.FromSeconds(60));

        var hung = (await store.EnqueueAsync("conveyor.sleep", """{"ms":600000,"ignoreCancellation":true}""", 1, maxAttempts: 1)).Single();
        var others = await store.EnqueueAsync("conveyor.sleep", """{"ms":10}""", 3, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(others)).Values.All(t => t.State == TaskState.Running && t.WorkerId == childId),
            TimeSpan.FromSeconds(30), "the child to lease the other tasks");
        var clock = Stopwatch.StartNew();

        await WaitUntilAsync(async () => (await store.GetAsync([hung, .. others])).Values.All(t => t.State is TaskState.Succeeded or TaskState.Dead),
            TimeSpan.FromSeconds(40), () => $"every task to end. Output: {supervisor.Output}");
        Assert.True(clock.Elapsed < Lease / 2, $"the tasks took {clock.Elapsed}");
        var record = (await store.GetAsync([hung])).Values.Single();
        Assert.Equal(TaskState.Dead, record.State);
        Assert.Equal("Conveyor.HardTimeLimit", record.Error?.Type);
        Assert.Equal(1, record.Attempts);
        // The others never started in the ended child: they ran once, in the next.
        Assert.All((await store.GetAsync(others)).Values, t => Assert.True(t.State == TaskState.Succeeded && t.Attempts == 1, $"{t.Id}: {t.State}, {t.Attempts} attempts"));
        Assert.Contains("passed its soft time limit of 00:00:01", supervisor.Output, StringComparison.Ordinal);
        Assert.Contains("passed the hard time limit of 00:00:02", supervisor.Output, StringComparison.Ordinal);
        // Logged once the hand-back process (which finds the leases the child handed back already gone) ended, beside
        // the replacement's start.
        await WaitUntilAsync(() => Regex.IsMatch(supervisor.Output, @"exited after a task passed the hard time limit \(code 124\) after [\d.]+ s; 0 leases handed back; replaced at once"),
            TimeSpan.FromSeconds(30), () => $"the supervisor's line about the hard limit. Output: {supervisor.Output}");
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task SIGTERM_drains_the_children_within_the_graceful_timeout(string backend)
    {
        await using var store = await OpenStoreAsync(backend);
        using var supervisor = StartConveyorWorker("--processes", "2", "--concurrency", "2", "--graceful-timeout", "5");
        await WaitForWorkerAsync(supervisor, (await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60))).WorkerId, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, (await WaitForChildAsync(supervisor, 2, TimeSpan.FromSeconds(60))).WorkerId, TimeSpan.FromSeconds(60));
        var ids = await store.EnqueueAsync("conveyor.sleep", """{"ms":1500}""", 12, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.Count(t => t.State == TaskState.Running) == ids.Count,
            TimeSpan.FromSeconds(30), "the children to lease every task");

        var clock = Stopwatch.StartNew();
        supervisor.Terminate();
        var exitCode = await supervisor.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, exitCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the drain took {clock.Elapsed}");
        // What ran finished; what had not started was handed back unspent; nothing is left leased or failed.
        var tasks = (await store.GetAsync(ids)).Values.ToList();
        Assert.All(tasks, t => Assert.True(t.State is TaskState.Succeeded or TaskState.Queued, $"{t.Id}: {t.State}"));
        Assert.Contains(tasks, t => t.State == TaskState.Succeeded);
        Assert.All(tasks.Where(t => t.State == TaskState.Queued), t => Assert.Equal(0, t.Attempts));
        Assert.Contains("Supervisor stopped after 0 restarts", supervisor.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Second_signal_stops_the_supervisor_at_once_and_hands_back_the_leases()
    {
        await using var store = await OpenStoreAsync();
        using var supervisor = StartConveyorWorker("--processes", "1", "--concurrency", "2", "--graceful-timeout", "60");
        var (_, childId) = await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, childId, TimeSpan.FromSeconds(60));
        var ids = await store.EnqueueAsync("conveyor.sleep", """{"ms":600000,"ignoreCancellation":true}""", 2, maxAttempts: 3);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Running && t.WorkerId == childId),
            TimeSpan.FromSeconds(30), "the child to lease the tasks");

        // SIGTERM, not SIGINT: a test run started in the background (`.ci/run &`) inherits SIGINT ignored, and so do the
        // processes it starts; the runtime keeps an inherited SIG_IGN, so a SIGINT never reached the supervisor there.
        supervisor.Signal("TERM");
        await WaitUntilAsync(() => supervisor.Output.Contains("worker processes drain for up to", StringComparison.Ordinal), TimeSpan.FromSeconds(30),
            () => $"the supervisor to start draining. Output: {supervisor.Output}");
        var clock = Stopwatch.StartNew();
        supervisor.Signal("TERM");
        var exitCode = await supervisor.WaitForExitAsync(TimeSpan.FromSeconds(20));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the stop took {clock.Elapsed}");
        Assert.Equal(143, exitCode);
        // Handed back, not left to run out: none is still leased.
        Assert.All((await store.GetAsync(ids)).Values, t => Assert.NotEqual(TaskState.Running, t.State));
    }

    [Fact]
    public async Task Second_signal_stops_an_unsupervised_worker_at_once_and_hands_back_its_leases()
    {
        await using var store = await OpenStoreAsync();
        using var worker = StartConveyorWorker("--concurrency", "2", "--graceful-timeout", "60");
        await worker.WaitForLineAsync(l => l.Contains("Ctrl+C to stop", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var ids = await store.EnqueueAsync("conveyor.sleep", """{"ms":600000,"ignoreCancellation":true}""", 2, maxAttempts: 3);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Running), TimeSpan.FromSeconds(30),
            "the worker to lease the tasks");

        worker.Signal("TERM");
        // The first signal drains: the worker waits for its handlers, which ignore their tokens.
        await WaitUntilAsync(() => worker.Output.Contains("a second signal stops it at once", StringComparison.Ordinal), TimeSpan.FromSeconds(10),
            () => $"the drain to start. Output: {worker.Output}");
        var clock = Stopwatch.StartNew();
        worker.Signal("TERM");
        var exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(20));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the stop took {clock.Elapsed}");
        Assert.Equal(143, exitCode);
        Assert.Contains("Second stop signal", worker.Output, StringComparison.Ordinal);
        Assert.All((await store.GetAsync(ids)).Values, t => Assert.NotEqual(TaskState.Running, t.State));
    }

    /// <summary>The assemblies a process has mapped (the runtime maps each one it loads), by file name.</summary>
    private static HashSet<string> LoadedAssemblies(int processId) =>
        File.ReadAllLines($"/proc/{processId}/maps").Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6 && fields[5].EndsWith(".dll", StringComparison.Ordinal))
            .Select(fields => Path.GetFileName(fields[5])).ToHashSet(StringComparer.Ordinal);

    /// <summary>What the command reads its settings with, the backend, and what else a supervisor must not hold beside its
    /// children, idle or after a child's exit.</summary>
    private static readonly string[] CommandStack =
    [
        "System.CommandLine.dll", "Microsoft.Extensions.Configuration.dll", "Microsoft.Extensions.Configuration.Json.dll",
        "Microsoft.Extensions.DependencyInjection.dll", "Microsoft.Extensions.Options.dll", "Microsoft.Extensions.Logging.dll",
        "Microsoft.Extensions.Logging.Console.dll", "Microsoft.Extensions.Hosting.dll", "System.Text.Json.dll", "Conveyor.Sqlite.dll",
        "Conveyor.Sql.dll", "Microsoft.Data.Sqlite.dll",
        // What a PipeStream read loads on Unix (the hand-back process's answer is read with read(2) instead).
        "System.Net.Sockets.dll",
    ];

    [Fact]
    public async Task Supervisor_keeps_its_process_id_and_loads_no_command_line_configuration_DI_logging_or_backend_stack_idle_after_a_kill_and_after_a_recycle()
    {
        await using var store = await OpenStoreAsync();
        using var supervisor = StartConveyorWorker("--processes", "1", "--concurrency", "2", "--max-tasks-per-child", "4");
        var (childPid, childId) = await WaitForChildAsync(supervisor, 1, TimeSpan.FromSeconds(60));
        await WaitForWorkerAsync(supervisor, childId, TimeSpan.FromSeconds(60));

        // The settings were checked by the full command, which then replaced its program: same process, lean image.
        Assert.Contains($"Supervisor {supervisor.Id} runs 1 worker processes", supervisor.Output, StringComparison.Ordinal);
        var idle = LoadedAssemblies(supervisor.Id);
        Assert.Contains("Conveyor.dll", idle);
        Assert.Contains("System.Diagnostics.Process.dll", idle);
        AssertLean(idle);
        // The child, which runs the host, maps them: the same reading sees them where they are.
        Assert.Contains("Microsoft.Extensions.DependencyInjection.dll", LoadedAssemblies(childPid));

        // A crash: the child's leases come back through a hand-back process, well before they would run out (60 s).
        var ids = await store.EnqueueAsync("conveyor.sleep", """{"ms":3000}""", 2, maxAttempts: 3);
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.State == TaskState.Running && t.WorkerId == childId),
            TimeSpan.FromSeconds(30), "the child to lease both tasks");
        var killedAt = Stopwatch.StartNew();
        ConveyorProcess.SignalProcess(childPid, "KILL");
        await WaitUntilAsync(async () => (await store.GetAsync(ids)).Values.All(t => t.WorkerId != childId), TimeSpan.FromSeconds(30),
            () => $"the killed child's leases to come back. Output: {supervisor.Output} Errors: {supervisor.Error}");
        Assert.True(killedAt.Elapsed < Lease / 4, $"the leases came back {killedAt.Elapsed} after the kill");
        await WaitUntilAsync(() => Regex.IsMatch(supervisor.Output, @"was killed by signal 9 \(SIGKILL\) after [\d.]+ s; 2 leases handed back; restart 1 in"),
            TimeSpan.FromSeconds(30), () => $"the supervisor's line about the kill. Output: {supervisor.Output}");
        // The hand-back process logs on standard error (its standard output is its answer to the supervisor).
        await WaitUntilAsync(() => supervisor.Error.Contains($"Worker {childId} exited without handing back its leases: 2 handed back", StringComparison.Ordinal),
            TimeSpan.FromSeconds(10), () => $"the hand-back process's line. Errors: {supervisor.Error}");
        AssertLean(LoadedAssemblies(supervisor.Id));

        // A recycle: the two tasks (rerun by the next child) and two more make four finished attempts; the child drains,
        // hands back what it holds itself, and exits 75: the supervisor builds nothing.
        var (_, secondId) = await WaitForChildAsync(supervisor, 2, TimeSpan.FromSeconds(30));
        var more = await store.EnqueueAsync("conveyor.noop", "{}", 2, maxAttempts: 1);
        await WaitUntilAsync(async () => (await store.GetAsync([.. ids, .. more])).Values.All(t => t.State == TaskState.Succeeded), TimeSpan.FromSeconds(60),
            () => $"every task to succeed. Output: {supervisor.Output}");
        await WaitUntilAsync(() => supervisor.Output.Contains($"worker {secondId}) exited to be recycled (code 75)", StringComparison.Ordinal), TimeSpan.FromSeconds(30),
            () => $"the recycle. Output: {supervisor.Output}");
        // Replaced when it began to drain, not when it exited (ChildNotice): the replacement started before the exit.
        Assert.Matches(@"exited to be recycled \(code 75\) after [\d.]+ s; it handed back its leases itself; replaced at once, when it began to drain \(restart 2\)", supervisor.Output);
        Assert.True(supervisor.Output.IndexOf($"worker {secondId}) recycles: it stopped fetching and drains; its replacement starts now", StringComparison.Ordinal)
            is var retiring and >= 0 && retiring < supervisor.Output.IndexOf("Worker process 1 started: pid", retiring, StringComparison.Ordinal),
            $"the replacement was not started when the child began to drain. Output: {supervisor.Output}");
        await WaitForWorkerAsync(supervisor, (await WaitForChildAsync(supervisor, 3, TimeSpan.FromSeconds(30))).WorkerId, TimeSpan.FromSeconds(60));
        AssertLean(LoadedAssemblies(supervisor.Id));
        Assert.DoesNotContain($"Worker {secondId} exited without handing back", supervisor.Error, StringComparison.Ordinal);

        static void AssertLean(HashSet<string> loaded) => Assert.All(CommandStack, assembly => Assert.DoesNotContain(assembly, loaded));
    }

    [Theory]
    [InlineData("simple", @"^\d\d:\d\d:\d\d info: Conveyor\.WorkerSupervisor\[2\] Worker process 1 started: pid \d+, worker \S+$")]
    [InlineData("systemd", @"^<6>Conveyor\.WorkerSupervisor\[2\] Worker process 1 started: pid \d+, worker \S+$")]
    public async Task Supervisor_writes_its_lines_in_the_configured_log_format(string format, string pattern)
    {
        var environment = Environment();
        environment["LOG_FORMAT"] = format;
        // Not under systemd, whatever runs the tests: the format is the one asked for.
        environment["JOURNAL_STREAM"] = "";
        using var supervisor = ConveyorProcess.Start(_folder, environment, "worker", "--processes", "1", "--concurrency", "1");
        var line = await supervisor.WaitForLineAsync(l => l.Contains("Worker process 1 started", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        Assert.Matches(pattern, line);
    }

    [Fact]
    public async Task Supervisor_writes_JSON_lines_shaped_as_its_childrens()
    {
        var environment = Environment();
        environment["LOG_FORMAT"] = "json";
        using var supervisor = ConveyorProcess.Start(_folder, environment, "worker", "--processes", "1", "--concurrency", "1");
        var supervisorLine = await supervisor.WaitForLineAsync(l => l.Contains("Worker process 1 started", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var childLine = await supervisor.WaitForLineAsync(l => l.Contains("\"Conveyor.WorkerService\"", StringComparison.Ordinal) && l.Contains(" started on queues ", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60));

        using var entry = JsonDocument.Parse(supervisorLine);
        using var childEntry = JsonDocument.Parse(childLine);
        static string[] Names(JsonElement element) => element.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(Names(childEntry.RootElement), Names(entry.RootElement));
        var root = entry.RootElement;
        Assert.Equal(2, root.GetProperty("EventId").GetInt32());
        Assert.Equal("Information", root.GetProperty("LogLevel").GetString());
        Assert.Equal("Conveyor.WorkerSupervisor", root.GetProperty("Category").GetString());
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", root.GetProperty("Timestamp").GetString());
        var state = root.GetProperty("State");
        Assert.Equal(root.GetProperty("Message").GetString(), state.GetProperty("Message").GetString());
        Assert.Equal(JsonValueKind.Number, state.GetProperty("Slot").ValueKind);
        Assert.Equal(1, state.GetProperty("Slot").GetInt32());
        Assert.Equal("Worker process {Slot} started: pid {ProcessId}, worker {WorkerId}", state.GetProperty("{OriginalFormat}").GetString());
        Assert.Equal(0, root.GetProperty("Scopes").GetArrayLength());
    }

    [Fact]
    public async Task Invalid_worker_process_settings_stop_the_start_with_a_message_naming_the_flag()
    {
        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment(), "worker", "--processes", "2", "--max-memory-per-child", "lots",
            "--time-limit", "5", "--soft-time-limit", "10");
        Assert.Equal(2, exitCode);
        Assert.Contains("--max-memory-per-child (Conveyor:Worker:MaxMemoryPerChild) 'lots' is not a size", error, StringComparison.Ordinal);
        Assert.Contains("--soft-time-limit (00:00:10) must be shorter than --time-limit (00:00:05)", error, StringComparison.Ordinal);
    }

    private void AssertEachRanOnce(IReadOnlyCollection<Guid> ids)
    {
        // The sample writes a file per process (runs.log.{pid}).
        var runs = Directory.GetFiles(_folder, Path.GetFileName(RunLogPath) + ".*").SelectMany(File.ReadAllLines).Select(line => Guid.Parse(line.Split(' ')[0])).GroupBy(id => id).ToDictionary(g => g.Key, g => g.Count());
        var missing = ids.Where(id => !runs.ContainsKey(id)).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} tasks never ran");
        var twice = runs.Where(r => r.Value > 1).ToList();
        Assert.True(twice.Count == 0, $"{twice.Count} tasks ran more than once, e.g. {twice.FirstOrDefault().Key} ×{twice.FirstOrDefault().Value}");
    }
}

/// <summary>The store the processes under test use, opened from the test to enqueue and read tasks: a SQLite file, or a
/// schema of its own on the test PostgreSQL server (CONVEYOR_TEST_POSTGRES), dropped afterwards.</summary>
internal sealed class TestStore : IAsyncDisposable
{
    private readonly IConveyorBackend _backend;
    private readonly Func<ValueTask> _close;

    private TestStore(IConveyorBackend backend, string databaseUrl, Func<ValueTask> close)
    {
        _backend = backend;
        DatabaseUrl = databaseUrl;
        _close = close;
    }

    /// <summary>DATABASE_URL for the processes.</summary>
    public string DatabaseUrl { get; }

    public static async Task<TestStore> OpenAsync(string kind, string folder)
    {
        var database = (SqlDatabase)TestServers.Fresh(kind, folder, "supervisor");
        var backend = database.Create();
        var store = new TestStore(backend, database.Url, async () =>
        {
            if (backend is IAsyncDisposable asyncDisposable)
            {
                await asyncDisposable.DisposeAsync();
            }
            else
            {
                ((IDisposable)backend).Dispose();
            }
            await database.DropAsync(CancellationToken.None);
        });
        // Migrated here, before any process starts, so that they do not race to create the schema.
        await store._backend.MigrateAsync(CancellationToken.None);
        return store;
    }

    public async Task<List<Guid>> EnqueueAsync(string task, string args, int count, int maxAttempts)
    {
        var messages = Enumerable.Range(0, count)
            .Select(_ => new TaskMessage { Id = Guid.CreateVersion7(), Task = task, Args = args, MaxAttempts = maxAttempts, CreatedAt = DateTimeOffset.UtcNow })
            .ToList();
        await _backend.Queue.EnqueueAsync(messages, CancellationToken.None);
        return messages.Select(m => m.Id).ToList();
    }

    public async Task<Dictionary<Guid, TaskRecord>> GetAsync(IEnumerable<Guid> ids)
    {
        var records = new Dictionary<Guid, TaskRecord>();
        foreach (var id in ids)
        {
            records[id] = await _backend.Store.GetAsync(id, CancellationToken.None) ?? throw new InvalidOperationException($"task {id} is not stored");
        }
        return records;
    }

    /// <summary>The tasks whose handlers run now, by the workers' heartbeats (once a second here).</summary>
    public Task<HashSet<Guid>> RunningHandlersAsync() => ShutdownTests.RunningHandlersAsync(_backend);

    public ValueTask DisposeAsync() => _close();
}
