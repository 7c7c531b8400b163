using Conveyor.Backends;

namespace Conveyor.Tests.Engine;

/// <summary>Priorities across queues, seen from a worker: with weights, a low-weight queue keeps its share under a steady
/// load on a high-weight one (bounded starvation); with strict order it waits until the first queue is empty.</summary>
public sealed class QueueShareEngineTests
{
    private const int High = 4000;
    private const int Low = 1000;
    private const int Window = 2000;

    private static async Task<double> LowShareOfFirstStartsAsync(bool strict)
    {
        await using var host = new EngineHost(c => c.AddNoopTask(), o =>
        {
            o.Worker.Queues.Add("high:3");
            o.Worker.Queues.Add("low:1");
            o.Worker.StrictQueueOrder = strict;
            o.Worker.Concurrency = 4;
            // Small fetches, so the share is made of many fetches (each takes its batch from the queue drawn first).
            o.Worker.Prefetch = 8;
            o.Worker.FetchConcurrency = 1;
        });
        // Both backlogs exist before the worker starts: the high queue stays busy through the window.
        await host.Client.EnqueueManyAsync(Enumerable.Range(0, High).Select(_ => new TaskRequest(NoopTask.Name, null, new EnqueueOptions { Queue = "high" })).ToList());
        await host.Client.EnqueueManyAsync(Enumerable.Range(0, Low).Select(_ => new TaskRequest(NoopTask.Name, null, new EnqueueOptions { Queue = "low" })).ToList());
        await host.StartAsync();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        List<TaskRecord> finished;
        while (true)
        {
            finished = await ListAllAsync(host.Backend);
            if (finished.Count(t => t.State == TaskState.Succeeded) >= Window || DateTime.UtcNow > deadline)
            {
                break;
            }
            await Task.Delay(50);
        }
        await host.StopAsync();
        var first = finished.Where(t => t.StartedAt is not null).OrderBy(t => t.StartedAt).Take(Window).ToList();
        Assert.Equal(Window, first.Count);
        Assert.True(first.Count(t => t.Queue == "high") < High, "the high queue must have work through the window");
        return first.Count(t => t.Queue == "low") / (double)Window;
    }

    private static async Task<List<TaskRecord>> ListAllAsync(Testing.InMemoryBackend backend)
    {
        var all = new List<TaskRecord>();
        string? cursor = null;
        do
        {
            var page = await backend.ListAsync(new TaskQuery { Limit = 1000, Cursor = cursor }, CancellationToken.None);
            all.AddRange(page.Items);
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        return all;
    }

    [Fact]
    public async Task A_queue_weighted_1_beside_one_weighted_3_gets_about_a_quarter_of_the_starts_under_steady_load()
    {
        var share = await LowShareOfFirstStartsAsync(strict: false);

        Assert.InRange(share, 0.15, 0.35);
    }

    [Fact]
    public async Task In_strict_order_the_second_queue_waits_while_the_first_has_work()
    {
        var share = await LowShareOfFirstStartsAsync(strict: true);

        Assert.Equal(0, share);
    }
}
