using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Worker;

/// <summary>The stop does not wait for a fetch in flight (a backend that does not answer would hold up the drain), but
/// such a fetch may still lease tasks to the stopping worker: PostgreSQL's statement runs on once sent. Those leases
/// must be handed back by the drain's end, not left to run out.</summary>
public sealed class AbandonedFetchTests
{
    [Fact]
    public async Task Tasks_that_a_fetch_leases_after_the_stop_gave_up_on_it_are_queued_again_when_the_stop_ends()
    {
        var stopBegan = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var asked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fetched = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o => o.Worker.Concurrency = 2)
            .UseInMemoryBackend()
            .UseBackend(sp =>
            {
                var inner = sp.GetRequiredService<InMemoryBackend>();
                // The first fetch reaches the store only 300 ms after the stop began (a slow database), and runs on
                // without the stop's token; its leases are recorded when it returns.
                return new WatchedBackend(inner, FetchObserver.Wrap(inner.Queue,
                    asked: _ =>
                    {
                        if (!asked.TrySetResult())
                        {
                            return Task.CompletedTask;
                        }
                        return stopBegan.Task.ContinueWith(_ => Task.Delay(TimeSpan.FromMilliseconds(300)), TaskScheduler.Default).Unwrap();
                    },
                    fetched: leases => fetched.TrySetResult(leases.Count),
                    runOn: true));
            });
        using var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < 10; i++)
        {
            await client.EnqueueAsync(new TaskRequest(NoopTask.Name));
        }
        await host.StartAsync();
        await asked.Task.WaitAsync(TimeSpan.FromSeconds(10));

        stopBegan.SetResult();
        await host.StopAsync();

        // The fetch did lease the tasks, after the stop began; by the stop's end they are queued again, none left held.
        Assert.Equal(10, await fetched.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        var counts = (await host.Services.GetRequiredService<IConveyorBackend>().Store.GetQueuesAsync(CancellationToken.None)).Single().Counts;
        Assert.Equal(10, counts.GetValueOrDefault(TaskState.Queued));
        Assert.Equal(0, counts.GetValueOrDefault(TaskState.Running));
    }
}
