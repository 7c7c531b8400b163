using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>A worker measures its clock against its engine's at start and warns past a second (issue 10: leases are
/// judged by the processes' clocks, and a worker process has no <c>/health/ready</c> of its own).</summary>
public sealed class ClockSkewEngineTests
{
    [Theory]
    [InlineData(3.0, true)]
    [InlineData(-3.0, true)]
    [InlineData(0.2, false)]
    public async Task Worker_warns_at_start_when_its_clock_is_off_its_engines(double skewSeconds, bool warned)
    {
        var logs = new CapturingLoggerProvider();
        var checkedHealth = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var host = new EngineHost(c =>
            {
                c.Services.AddSingleton<ILoggerProvider>(logs);
                c.AddNoopTask();
            },
            backend: inner => new SkewedBackend(inner, TimeSpan.FromSeconds(skewSeconds), checkedHealth));
        await host.StartAsync();

        // The check runs beside the first fetch: a task done means the worker is up; the health answer, that it asked.
        var result = await host.Client.EnqueueAsync(NoopTask.Name);
        await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        await checkedHealth.Task.WaitAsync(TimeSpan.FromSeconds(20));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (warned && !Warned(logs) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
        await host.StopAsync();

        Assert.Equal(warned, Warned(logs));
    }

    private static bool Warned(CapturingLoggerProvider logs) =>
        logs.Entries.Any(e => e.Level == LogLevel.Warning && e.Message.Contains("this process's clock differs from", StringComparison.Ordinal));

    /// <summary>The in-memory backend, whose health answer reports the given skew (its clock is this process's).</summary>
    private sealed class SkewedBackend(InMemoryBackend inner, TimeSpan skew, TaskCompletionSource checkedHealth) : IConveyorBackend
    {
        public string Name => inner.Name;
        public IQueueBackend Queue => inner.Queue;
        public ITaskStore Store => inner.Store;
        public ICoordinationBackend Coordination => inner.Coordination;
        public IScheduleStore Schedules => inner.Schedules;
        public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;
        public INotifier Notifier => inner.Notifier;
        public ILimitStore Limits => inner.Limits;
        public IWorkflowStore? Workflows => inner.Workflows;
        public BackendCapabilities Capabilities => inner.Capabilities;
        public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);

        public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
        {
            var health = await inner.CheckHealthAsync(cancellationToken);
            checkedHealth.TrySetResult();
            return health with { ClockSkew = skew };
        }
    }
}
