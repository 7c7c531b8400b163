using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Testing.Tests;

/// <summary>The harness without inline execution: enqueues are stored, and run when the test says so.</summary>
public sealed class HarnessTests
{
    private static ConveyorTestHarness Create() => ConveyorTestHarness.Create(
        c => c.AddTask<ScoreFlight>(ScoreFlight.Name).AddTask<BrokenTask>(BrokenTask.Name).AddTask<ImportFlights>(ImportFlights.Name),
        s => s.AddSingleton<Journal>().AddScoped<AttemptScope>());

    [Fact]
    public async Task Enqueue_stores_the_task_without_running_it()
    {
        await using var harness = Create();

        var result = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(1));

        Assert.Equal(TaskState.Queued, result.State);
        Assert.Empty(harness.Services.GetRequiredService<Journal>().Entries);
        Assert.Equal(TaskState.Queued, harness.RequireEnqueued(ScoreFlight.Name).State);
    }

    [Fact]
    public async Task Run_pending_runs_every_ready_task_and_the_tasks_they_enqueue()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync(ImportFlights.Name, new[] { 3, 4 });

        var attempts = await harness.RunPendingAsync();

        Assert.Equal(3, attempts);
        Assert.Equal(["import", "import done", "score 3", "score 4"], harness.Services.GetRequiredService<Journal>().Entries.Select(e => e.Split(" attempt")[0]));
        Assert.All(harness.Enqueued, t => Assert.Equal(TaskState.Succeeded, t.State));
    }

    [Fact]
    public async Task Run_pending_runs_higher_priority_first()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(1));
        await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(2), new EnqueueOptions { Priority = 5 });

        await harness.RunPendingAsync();

        Assert.Equal(["score 2", "score 1"], harness.Services.GetRequiredService<Journal>().Entries.Select(e => e.Split(" attempt")[0]));
    }

    [Fact]
    public async Task Run_pending_runs_everything_then_fails_for_a_task_that_ended_dead()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync(BrokenTask.Name, new EnqueueOptions { MaxAttempts = 2 });
        await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(5));

        var error = await Assert.ThrowsAsync<TaskExecutionException>(() => harness.RunPendingAsync());

        Assert.Equal("attempt 2 failed", error.InnerException?.Message);
        Assert.Equal(TaskState.Succeeded, harness.RequireEnqueued(ScoreFlight.Name).State);
        Assert.Equal(TaskState.Dead, harness.RequireEnqueued(BrokenTask.Name).State);
    }

    [Fact]
    public async Task Run_of_one_task_runs_only_that_task()
    {
        await using var harness = Create();
        var one = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(1));
        await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(2));

        var record = await harness.Runner.RunAsync(one.Id);

        Assert.Equal(TaskState.Succeeded, record?.State);
        Assert.Equal(TaskState.Queued, harness.RequireEnqueued(ScoreFlight.Name, new FlightArgs(2)).State);
    }
}
