using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Engine;

/// <summary>What a worker's heartbeat reports about it: the registry behind <c>/api/v1/workers</c> and <c>conveyor info</c>.</summary>
public sealed class RegistryEngineTests
{
    [Fact]
    public async Task Heartbeat_reports_running_tasks_task_names_version_and_memory()
    {
        await using var host = new EngineHost(c => c.AddTask<GatedTask>(GatedTask.Name).AddNoopTask());
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(GatedTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        var workerId = host.Services.GetRequiredService<WorkerStatus>().WorkerId;

        var deadline = DateTime.UtcNow.AddSeconds(20);
        WorkerInfo? info = null;
        while (info is null || info.RunningTasks.Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "no heartbeat listed the running task");
            await Task.Delay(20);
            info = (await host.Backend.ListWorkersAsync(DateTimeOffset.MinValue, CancellationToken.None)).SingleOrDefault(w => w.Id == workerId);
        }

        var running = Assert.Single(info.RunningTasks);
        Assert.Equal(result.Id, running.Id);
        Assert.Equal(GatedTask.Name, running.Task);
        Assert.Equal(1, running.Attempt);
        Assert.Contains(NoopTask.Name, info.Tasks);
        Assert.Contains(GatedTask.Name, info.Tasks);
        Assert.False(string.IsNullOrEmpty(info.Version));
        Assert.True(info.MemoryBytes > 1_000_000);
        host.Probe.Gate.TrySetResult();
    }
}
