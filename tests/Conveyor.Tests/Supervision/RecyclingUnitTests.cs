using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Supervision;

/// <summary>A worker recycled by task count runs exactly its count (Celery's max tasks per child): its handlers start
/// nothing beyond it, however fast the tasks end and however full its prefetch buffer, and the rest go back unspent.</summary>
public sealed class RecyclingUnitTests
{
    [Fact]
    public async Task A_worker_recycled_at_ten_tasks_runs_ten_and_hands_back_the_rest_unspent()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        var runs = new RunCounter();
        builder.Services.AddSingleton(runs);
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 4;
                o.Worker.Prefetch = 64;
                o.Worker.MaxTasksPerChild = 10;
            })
            .AddTask<CountedTask>(CountedTask.Name)
            .UseInMemoryBackend();
        using var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < 200; i++)
        {
            await client.EnqueueAsync(new TaskRequest(CountedTask.Name));
        }
        var exitCode = Environment.ExitCode;
        try
        {
            await host.StartAsync();
            // The recycler stops the host once ten have finished.
            await host.WaitForShutdownAsync().WaitAsync(TimeSpan.FromSeconds(30));

            Assert.Equal(10, runs.Count);
            var counts = (await host.Services.GetRequiredService<IConveyorBackend>().Store.GetQueuesAsync(CancellationToken.None)).Single().Counts;
            Assert.Equal(10, counts.GetValueOrDefault(TaskState.Succeeded));
            Assert.Equal(190, counts.GetValueOrDefault(TaskState.Queued));
            var page = await host.Services.GetRequiredService<IConveyorBackend>().Store.ListAsync(new TaskQuery { State = TaskState.Queued, Limit = 200 }, CancellationToken.None);
            Assert.Equal(190, page.Items.Count);
            Assert.All(page.Items, t => Assert.Equal(0, t.Attempts));
        }
        finally
        {
            // Outside a supervisor, a recycled process exits 75 for systemd to restart it: not this test's process.
            Environment.ExitCode = exitCode;
        }
    }

    private sealed class RunCounter
    {
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public void Ran() => Interlocked.Increment(ref _count);
    }

    private sealed class CountedTask(RunCounter runs) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.recycle-count";

        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            runs.Ran();
            return Task.CompletedTask;
        }
    }
}
