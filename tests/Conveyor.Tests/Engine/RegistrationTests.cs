using Conveyor.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Engine;

/// <summary>What a library or an app registers: the client alone, a worker, settings bound from configuration.</summary>
public sealed class RegistrationTests
{
    [Fact]
    public async Task Client_alone_enqueues_and_runs_nothing()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyorClient().AddNoopTask().UseInMemoryBackend();
        using var host = builder.Build();
        await host.StartAsync();

        var client = host.Services.GetRequiredService<ITaskClient>();
        var result = await client.EnqueueAsync(NoopTask.Name);

        var options = host.Services.GetRequiredService<IOptions<ConveyorOptions>>().Value;
        Assert.False(options.RunWorker);
        Assert.False(options.RunScheduler);
        Assert.False(host.Services.GetRequiredService<WorkerStatus>().IsRunning);
        Assert.Equal(TaskState.Queued, (await client.GetAsync(result.Id))!.State);
        Assert.Empty(await host.Services.GetRequiredService<InMemoryBackend>().ListWorkersAsync(DateTimeOffset.MinValue, CancellationToken.None));
        await host.StopAsync();
    }

    [Fact]
    public async Task Worker_registration_runs_tasks_with_settings_bound_from_a_configuration_section()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Jobs:Worker:Concurrency"] = "3",
            ["Jobs:Worker:Queues:0"] = "mail:2",
            ["Jobs:Worker:Queues:1"] = "default",
        });
        builder.Services.AddConveyor(builder.Configuration.GetSection("Jobs"), o => o.RunWorker = false);
        builder.Services.AddConveyorWorker().AddNoopTask().UseInMemoryBackend();
        using var host = builder.Build();
        await host.StartAsync();

        var options = host.Services.GetRequiredService<IOptions<ConveyorOptions>>().Value;
        Assert.Equal(3, options.Worker.Concurrency);
        Assert.Equal(["mail", "default"], options.Worker.ParseQueues().Select(q => q.Name));
        // The worker registration comes after the bound section's RunWorker = false, and turns the worker on.
        Assert.True(options.RunWorker);
        var client = host.Services.GetRequiredService<ITaskClient>();
        var result = await client.EnqueueAsync(NoopTask.Name, options: new EnqueueOptions { Queue = "mail" });
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await client.GetAsync(result.Id))!.State != TaskState.Succeeded)
        {
            Assert.True(DateTime.UtcNow < deadline, "the worker did not run the task");
            await Task.Delay(20);
        }
        await host.StopAsync();
    }
}
