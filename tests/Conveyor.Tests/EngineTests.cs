using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Conveyor.Tests;

public sealed class EngineTests
{
    [Fact]
    public async Task Noop_tasks_enqueued_in_a_batch_all_succeed()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddConveyor().AddNoopTask().UseInMemoryBackend();
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<ITaskClient>();
        var requests = Enumerable.Range(0, 2000).Select(_ => new TaskRequest(NoopTask.Name)).ToList();
        var results = await client.EnqueueManyAsync(requests);
        var backend = host.Services.GetRequiredService<InMemoryBackend>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        long succeeded = 0;
        while (DateTime.UtcNow < deadline)
        {
            var queues = await backend.GetQueuesAsync(CancellationToken.None);
            succeeded = queues.Single().Count(TaskState.Succeeded);
            if (succeeded == 2000) break;
            await Task.Delay(20);
        }
        Assert.Equal(2000, succeeded);
        var one = await client.GetAsync(results[0].Id);
        Assert.NotNull(one);
        Assert.Equal([TaskState.Queued, TaskState.Running, TaskState.Succeeded], one.Transitions.Select(t => t.State));
        await host.StopAsync();
    }
}
