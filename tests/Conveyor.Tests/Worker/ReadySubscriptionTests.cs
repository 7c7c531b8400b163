using Conveyor.Backends;
using Conveyor.Testing;
using Conveyor.Tests.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Worker;

/// <summary>The worker subscribes to ready notifications beside its first fetch, not before it (issue 15): work made ready
/// after that fetch found nothing but before the subscription took effect sends a notification nobody hears, and must
/// still be found at once, not at the fallback poll.</summary>
public sealed class ReadySubscriptionTests
{
    [Fact]
    public async Task Work_made_ready_while_the_subscription_is_under_way_runs_once_it_is_in_place_not_at_the_fallback_poll()
    {
        var subscribing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var letSubscribe = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var emptyFetch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Probe>();
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 1;
                // One fetch loop: a second one's first fetch, still under way, would find the task on its own.
                o.Worker.FetchConcurrency = 1;
                // Far beyond the test's deadline: only a wake-up finds the task in time.
                o.Worker.FetchWait = TimeSpan.FromMinutes(2);
            })
            .AddTask<CountingTask>(CountingTask.Name)
            .UseInMemoryBackend()
            .UseBackend(sp =>
            {
                var inner = sp.GetRequiredService<InMemoryBackend>();
                return new WatchedBackend(inner,
                    FetchObserver.Wrap(inner.Queue, fetched: leases =>
                    {
                        if (leases.Count == 0)
                        {
                            emptyFetch.TrySetResult();
                        }
                    }),
                    new GatedNotifier(inner.Notifier, subscribing, letSubscribe.Task));
            });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            await subscribing.Task.WaitAsync(TimeSpan.FromSeconds(20));
            await emptyFetch.Task.WaitAsync(TimeSpan.FromSeconds(20));

            // The first fetch found nothing and the subscription is not in place: this enqueue's notification is lost.
            await host.Services.GetRequiredService<ITaskClient>().EnqueueAsync(new TaskRequest(CountingTask.Name));
            letSubscribe.SetResult();

            await host.Services.GetRequiredService<Probe>().Started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            letSubscribe.TrySetResult();
            await host.StopAsync();
        }
    }

    private sealed class GatedNotifier(INotifier inner, TaskCompletionSource subscribing, Task letSubscribe) : INotifier
    {
        public ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken) =>
            inner.PublishAsync(channel, payload, cancellationToken);

        public async ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken)
        {
            if (channel == NotifierChannels.Ready)
            {
                subscribing.TrySetResult();
                await letSubscribe.WaitAsync(cancellationToken);
            }
            return await inner.SubscribeAsync(channel, handler, cancellationToken);
        }
    }
}
