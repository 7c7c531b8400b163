namespace Conveyor.Conformance;

/// <summary>Coordination role: worker heartbeats and the list of live workers.</summary>
public abstract class CoordinationConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private WorkerInfo Worker(string id, int running = 0) => new()
    {
        Id = id,
        Host = "host-" + id,
        ProcessId = 4242,
        Queues = ["default", "mail"],
        Concurrency = 16,
        Running = running,
        Processed = 100 + running,
        Failed = 3,
        StartedAt = Now.AddMinutes(-5),
        HeartbeatAt = Now,
        Tasks = ["reports.build", "mail.send"],
        ArgsSchemas = new Dictionary<string, System.Text.Json.JsonElement>
        {
            ["reports.build"] = System.Text.Json.JsonDocument.Parse("""{"type":["object","null"],"properties":{"pages":{"type":"integer"}},"required":["pages"]}""").RootElement.Clone(),
        },
    };

    [Fact]
    public async Task Heartbeat_registers_a_worker_with_every_field()
    {
        var worker = Worker("w1", running: 2);

        await Coordination.HeartbeatAsync(worker, Timeout);

        var listed = Assert.Single(await Coordination.ListWorkersAsync(Now.AddMinutes(-1), Timeout));
        Assert.Equal(worker.Id, listed.Id);
        Assert.Equal(worker.Host, listed.Host);
        Assert.Equal(worker.ProcessId, listed.ProcessId);
        Assert.Equal(worker.Queues, listed.Queues);
        Assert.Equal(worker.Concurrency, listed.Concurrency);
        Assert.Equal(worker.Running, listed.Running);
        Assert.Equal(worker.Processed, listed.Processed);
        Assert.Equal(worker.Failed, listed.Failed);
        Assert.Equal(worker.StartedAt, listed.StartedAt);
        Assert.Equal(worker.HeartbeatAt, listed.HeartbeatAt);
        Assert.Equal(worker.Tasks, listed.Tasks);
        var schema = Assert.Single(listed.ArgsSchemas!);
        Assert.Equal("reports.build", schema.Key);
        Assert.Equal(worker.ArgsSchemas!["reports.build"].GetRawText(), schema.Value.GetRawText());
    }

    [Fact]
    public async Task Heartbeat_again_updates_the_worker_instead_of_adding_one()
    {
        await Coordination.HeartbeatAsync(Worker("w1", running: 1), Timeout);
        Advance(TimeSpan.FromSeconds(10));

        await Coordination.HeartbeatAsync(Worker("w1", running: 5), Timeout);

        var listed = Assert.Single(await Coordination.ListWorkersAsync(Now.AddMinutes(-1), Timeout));
        Assert.Equal(5, listed.Running);
        Assert.Equal(Now, listed.HeartbeatAt);
    }

    [Fact]
    public async Task List_workers_returns_only_those_seen_since_the_given_time()
    {
        await Coordination.HeartbeatAsync(Worker("old"), Timeout);
        Advance(TimeSpan.FromMinutes(2));
        var since = Now;
        await Coordination.HeartbeatAsync(Worker("fresh"), Timeout);

        var listed = await Coordination.ListWorkersAsync(since, Timeout);

        Assert.Equal(["fresh"], listed.Select(w => w.Id));
        Assert.Equal(2, (await Coordination.ListWorkersAsync(since.AddMinutes(-3), Timeout)).Count);
    }

    [Fact]
    public async Task List_workers_lists_many_workers_once_each()
    {
        for (var i = 0; i < 5; i++)
        {
            await Coordination.HeartbeatAsync(Worker($"w{i}"), Timeout);
        }

        var listed = await Coordination.ListWorkersAsync(Now.AddMinutes(-1), Timeout);

        Assert.Equal(["w0", "w1", "w2", "w3", "w4"], listed.Select(w => w.Id).Order());
    }

    [Fact]
    public async Task Removed_worker_is_no_longer_listed()
    {
        await Coordination.HeartbeatAsync(Worker("w1"), Timeout);
        await Coordination.HeartbeatAsync(Worker("w2"), Timeout);

        await Coordination.RemoveWorkerAsync("w1", Timeout);

        Assert.Equal(["w2"], (await Coordination.ListWorkersAsync(Now.AddMinutes(-1), Timeout)).Select(w => w.Id));
    }

    [Fact]
    public async Task Removing_an_unknown_worker_does_nothing()
    {
        await Coordination.HeartbeatAsync(Worker("w1"), Timeout);

        await Coordination.RemoveWorkerAsync("nobody", Timeout);

        Assert.Single(await Coordination.ListWorkersAsync(Now.AddMinutes(-1), Timeout));
    }
}
