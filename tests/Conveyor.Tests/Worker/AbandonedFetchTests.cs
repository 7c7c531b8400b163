using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Worker;

/// <summary>The stop does not wait for a fetch in flight (a backend that does not answer would hold up the drain), but
/// such a fetch may still lease tasks to the stopping worker: PostgreSQL's statement runs on once sent. Those leases
/// must be handed back by the drain's end, not left to run out; a fetch that never returns must not hold the stop.</summary>
public sealed class AbandonedFetchTests
{
    [Fact]
    public async Task Tasks_that_a_fetch_leases_after_the_stop_gave_up_on_it_are_queued_again_when_the_stop_ends()
    {
        var fetched = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        // The first fetch reaches the store only 300 ms after the stop cancelled it (a slow database), and runs on without
        // the token; its leases are recorded when it returns.
        using var host = await StartAsync(token => AfterCancelledAsync(TimeSpan.FromMilliseconds(300), token), leases => fetched.TrySetResult(leases.Count));

        await host.StopAsync();

        // The fetch did lease the tasks, after the stop began; by the stop's end they are queued again, none left held.
        Assert.Equal(10, await fetched.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        var counts = (await host.Services.GetRequiredService<IConveyorBackend>().Store.GetQueuesAsync(CancellationToken.None)).Single().Counts;
        Assert.Equal(10, counts.GetValueOrDefault(TaskState.Queued));
        Assert.Equal(0, counts.GetValueOrDefault(TaskState.Running));
    }

    [Fact]
    public async Task A_fetch_that_never_returns_holds_the_stop_no_longer_than_the_wait_for_it()
    {
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var host = await StartAsync(_ => never.Task, _ => { });

        var stopping = Stopwatch.StartNew();
        await host.StopAsync();

        // The wait for it is 2 s; the stop's own budget (the 30 s graceful timeout and 7 s) would be far longer. A sanity
        // bound for a shared machine, not a timing measurement.
        Assert.InRange(stopping.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(15));
        var counts = (await host.Services.GetRequiredService<IConveyorBackend>().Store.GetQueuesAsync(CancellationToken.None)).Single().Counts;
        Assert.Equal(10, counts.GetValueOrDefault(TaskState.Queued));
    }

    /// <summary>A started worker over 10 queued no-op tasks, one fetch loop, whose first fetch waits for what
    /// <paramref name="firstFetchWaits"/> gives for its token, then runs on without it.</summary>
    private static async Task<IHost> StartAsync(Func<CancellationToken, Task> firstFetchWaits, Action<IReadOnlyList<Lease>> fetched)
    {
        var first = 0;
        var asked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 2;
                // One loop: no other fetch takes the tasks while the first is held.
                o.Worker.FetchConcurrency = 1;
            })
            .UseInMemoryBackend()
            .UseBackend(sp =>
            {
                var inner = sp.GetRequiredService<InMemoryBackend>();
                return new WatchedBackend(inner, FetchObserver.Wrap(inner.Queue,
                    askedWithToken: (_, token) =>
                    {
                        if (Interlocked.Exchange(ref first, 1) != 0)
                        {
                            return Task.CompletedTask;
                        }
                        asked.TrySetResult();
                        return firstFetchWaits(token);
                    },
                    fetched: fetched,
                    runOn: true));
            });
        var host = builder.Build();
        var client = host.Services.GetRequiredService<ITaskClient>();
        for (var i = 0; i < 10; i++)
        {
            await client.EnqueueAsync(new TaskRequest(NoopTask.Name));
        }
        await host.StartAsync();
        await asked.Task.WaitAsync(TimeSpan.FromSeconds(10));
        return host;
    }

    private static async Task AfterCancelledAsync(TimeSpan delay, CancellationToken token)
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (token.Register(() => cancelled.TrySetResult()))
        {
            await cancelled.Task;
        }
        // Counted from the cancellation, which the token has had by now.
        await Task.Delay(delay, CancellationToken.None);
    }
}
