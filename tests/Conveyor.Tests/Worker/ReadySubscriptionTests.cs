using System.Reflection;
using System.Runtime.ExceptionServices;
using Conveyor.Backends;
using Conveyor.Testing;
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
        builder.Services.AddSingleton<Ran>();
        builder.Services.AddConveyor(o =>
            {
                o.Worker.Concurrency = 1;
                // One fetch loop: a second one's first fetch, still under way, would find the task on its own.
                o.Worker.FetchConcurrency = 1;
                // Far beyond the test's deadline: only a wake-up finds the task in time.
                o.Worker.FetchWait = TimeSpan.FromMinutes(2);
            })
            .AddTask<ReadyUnitTask>(ReadyUnitTask.Name)
            .UseInMemoryBackend()
            .UseBackend(sp => new GatedBackend(sp.GetRequiredService<InMemoryBackend>(), subscribing, letSubscribe.Task, emptyFetch));
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            await subscribing.Task.WaitAsync(TimeSpan.FromSeconds(20));
            await emptyFetch.Task.WaitAsync(TimeSpan.FromSeconds(20));

            // The first fetch found nothing and the subscription is not in place: this enqueue's notification is lost.
            await host.Services.GetRequiredService<ITaskClient>().EnqueueAsync(new TaskRequest(ReadyUnitTask.Name));
            letSubscribe.SetResult();

            await host.Services.GetRequiredService<Ran>().Once.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            letSubscribe.TrySetResult();
            await host.StopAsync();
        }
    }

    private sealed class Ran
    {
        public TaskCompletionSource Once { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class ReadyUnitTask(Ran ran) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.ready-subscription";

        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            ran.Once.TrySetResult();
            return Task.CompletedTask;
        }
    }

    /// <summary>The in-memory backend, whose ready subscription waits for the test and whose fetches say when one came
    /// back empty.</summary>
    private sealed class GatedBackend(IConveyorBackend inner, TaskCompletionSource subscribing, Task letSubscribe, TaskCompletionSource emptyFetch) : IConveyorBackend
    {
        public string Name => inner.Name;
        public IQueueBackend Queue { get; } = FetchWatch.Wrap(inner.Queue, emptyFetch);
        public ITaskStore Store => inner.Store;
        public ICoordinationBackend Coordination => inner.Coordination;
        public IScheduleStore Schedules => inner.Schedules;
        public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;
        public INotifier Notifier { get; } = new GatedNotifier(inner.Notifier, subscribing, letSubscribe);
        public ILimitStore Limits => inner.Limits;
        public IWorkflowStore? Workflows => inner.Workflows;
        public BackendCapabilities Capabilities => inner.Capabilities;
        public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);
        public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => inner.CheckHealthAsync(cancellationToken);
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

    /// <summary>The queue role as it is, except that a fetch that returns no lease completes <c>emptyFetch</c>.</summary>
    public class FetchWatch : DispatchProxy
    {
        private IQueueBackend _inner = null!;
        private TaskCompletionSource _emptyFetch = null!;

        internal static IQueueBackend Wrap(IQueueBackend inner, TaskCompletionSource emptyFetch)
        {
            var proxy = Create<IQueueBackend, FetchWatch>();
            var watch = (FetchWatch)(object)proxy;
            watch._inner = inner;
            watch._emptyFetch = emptyFetch;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            object? result;
            try
            {
                result = targetMethod!.Invoke(_inner, args);
            }
            catch (TargetInvocationException ex) when (ex.InnerException is not null)
            {
                ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
                throw;
            }
            if (targetMethod.Name == nameof(IQueueBackend.FetchAsync) && result is Task<IReadOnlyList<Lease>> fetch)
            {
                _ = fetch.ContinueWith(t =>
                {
                    if (t.IsCompletedSuccessfully && t.Result.Count == 0)
                    {
                        _emptyFetch.TrySetResult();
                    }
                }, TaskScheduler.Default);
            }
            return result;
        }
    }
}
