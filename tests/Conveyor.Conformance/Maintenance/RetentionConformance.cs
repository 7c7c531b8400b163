using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Conformance;

/// <summary>
/// Retention through the real leader-only service on the system clock: a large backlog of finished tasks past
/// retention is deleted at a pace no completion rate can outrun. Registered by the SQL backends, where a table that
/// grows without bound is the failure this guards against.
/// </summary>
public abstract class RetentionConformance<TFactory> : ConformanceTest
    where TFactory : IConformanceBackendFactory, new()
{
    /// <summary>Runs on the system clock: the maintenance service runs for real.</summary>
    protected RetentionConformance() : base(new TFactory(), TimeProvider.System)
    {
    }

    /// <summary>How many finished tasks the test deletes: 200,000.</summary>
    protected virtual int FinishedTasks => 200_000;

    /// <summary>The bound on deleting them: 1 min.</summary>
    protected virtual TimeSpan Bound => TimeSpan.FromMinutes(1);

    [Fact]
    public async Task Retention_deletes_a_backlog_of_200000_finished_tasks_within_a_minute_and_keeps_the_rest()
    {
        const int batch = 1000;
        // Filling takes longer than the suite's usual minute on a busy machine: this test has a budget of its own.
        using var budget = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var token = budget.Token;
        for (var done = 0; done < FinishedTasks; done += batch)
        {
            var messages = Enumerable.Range(0, batch).Select(_ => NewMessage("retention")).ToList();
            await Queue.EnqueueAsync(messages, token);
            var leases = await Queue.FetchAsync(Request(batch, "retention"), token);
            Assert.Equal(batch, leases.Count);
            // Every terminal state retention deletes: mostly succeeded, some dead and cancelled.
            await Queue.CompleteAsync(leases.Select((l, i) => Completion(l, (i % 10) switch
            {
                0 => CompletionKind.Dead,
                1 => CompletionKind.Cancelled,
                _ => CompletionKind.Succeeded,
            }) with
            { Error = i % 10 == 0 ? Error(l) : null }).ToList(), token);
        }
        var waiting = (await Queue.EnqueueAsync([NewMessage("retention")], token))[0].Id;

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(Backend);
        builder.Services.AddConveyor(o =>
        {
            o.RunWorker = false;
            o.Scheduler.Retention = TimeSpan.FromMilliseconds(1);
        });
        using var host = builder.Build();
        var clock = Stopwatch.StartNew();
        await host.StartAsync(token);
        try
        {
            // One indexed page per state rather than counts over the whole table, which would slow what it watches.
            TaskState[] finished = [TaskState.Succeeded, TaskState.Dead, TaskState.Cancelled];
            while (true)
            {
                var any = false;
                foreach (var state in finished)
                {
                    any |= (await Store.ListAsync(new TaskQuery { Queue = "retention", State = state, Limit = 1 }, token)).Items.Count > 0;
                }
                if (!any)
                {
                    break;
                }
                Assert.True(clock.Elapsed < Bound, $"finished tasks are left after {clock.Elapsed}");
                await Task.Delay(500, token);
            }
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }

        var queue = (await Store.GetQueuesAsync(token)).Single(q => q.Name == "retention");
        Assert.Equal(0, queue.Count(TaskState.Succeeded) + queue.Count(TaskState.Dead) + queue.Count(TaskState.Cancelled));
        Assert.Equal(TaskState.Queued, (await Store.GetAsync(waiting, token))?.State);
    }
}
