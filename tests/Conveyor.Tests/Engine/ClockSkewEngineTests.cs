using Conveyor.Testing;
using Conveyor.Tests.Worker;
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
            // The in-memory backend, whose health answer reports the given skew (its clock is this process's).
            backend: inner => new WatchedBackend(inner, inner.Queue, health: answer =>
            {
                checkedHealth.TrySetResult();
                return answer with { ClockSkew = TimeSpan.FromSeconds(skewSeconds) };
            }));
        await host.StartAsync();

        // The check runs a heartbeat after the start: a task done means the worker is up; the health answer, that it asked.
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
}
