using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.Tests.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>A lease that passes its local deadline while the backend cannot be reached for its extension: a handler
/// already running is cancelled at once and its outcome is dropped (issue 10, item 2). The backend-reported loss is in
/// <see cref="LeaseEngineTests"/>; leases whose handler had not started, in <see cref="LeaseLostBeforeStartTests"/>.</summary>
public sealed class LeaseDeadlineEngineTests
{
    [Fact]
    public async Task A_running_handler_whose_lease_passes_its_local_deadline_unextended_is_cancelled_and_its_outcome_dropped()
    {
        var logs = new CapturingLoggerProvider();
        StartHold? hold = null;
        await using var host = new EngineHost(c =>
            {
                c.Services.AddSingleton<ILoggerProvider>(logs);
                c.AddTask<HangingTask>(HangingTask.Name);
            },
            o =>
            {
                o.Worker.Concurrency = 1;
                // The worker counts the lease lost 1.8 s after its last extension that succeeded.
                o.Worker.LeaseDuration = TimeSpan.FromSeconds(2);
            },
            inner =>
            {
                var queue = StartHold.Wrap(inner.Queue);
                hold = (StartHold)(object)queue;
                return new WatchedBackend(inner, queue);
            });
        await host.StartAsync();
        var result = await host.Client.EnqueueAsync(HangingTask.Name, options: new EnqueueOptions { MaxAttempts = 2 });
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await WaitUntilAsync(() => host.Backend.IsAttemptStarted(result.Id), "the start to be recorded");

        // From now on every extension fails, and the backend keeps the lease (its reaper is held): nothing but the
        // worker's own deadline can stop the handler, and an outcome written now would be taken.
        hold!.HoldReaper = true;
        var outage = Stopwatch.StartNew();
        hold.Outage = true;

        // The deadline is at most 1.8 s after the outage began (the last extension that succeeded came before it).
        var cancelled = host.Probe.TokenCancelled.Task;
        var first = await Task.WhenAny(cancelled, Task.Delay(TimeSpan.FromSeconds(10)));
        Assert.True(first == cancelled, $"the handler's token was not cancelled {outage.Elapsed} after the outage began");
        Assert.Contains(logs.Entries, e => e.Message.Contains($"Lease of task {result.Id} was lost", StringComparison.Ordinal));
        Assert.Equal(1, host.Probe.Runs);

        // The handler returned (cancelled) and the worker dropped its outcome instead of writing it.
        await WaitUntilAsync(() => logs.Entries.Any(e => e.Message.Contains($"Outcome of task {result.Id} dropped", StringComparison.Ordinal)),
            "the outcome to be dropped");
        var held = await host.Client.GetAsync(result.Id);
        Assert.Equal(TaskState.Running, held!.State);
        Assert.Equal(1, held.Attempts);
        Assert.Empty(held.Errors);

        // The backend takes the lease back once it may: the attempt counts as interrupted, the task runs again, and the
        // first handler's outcome (a time-limit failure, as its token was cancelled) is nowhere in its record.
        hold.Outage = false;
        hold.HoldReaper = false;
        var record = await host.WaitForAsync(result.Id, r => r.State == TaskState.Running && r.Attempts == 2 && host.Probe.Runs == 2);
        Assert.Equal(LeaseRules.InterruptedErrorType, Assert.Single(record.Errors).Error.Type);
        Assert.DoesNotContain(TaskState.Cancelled, record.Transitions.Select(t => t.State));

        Assert.Equal(CancelOutcome.Requested, await host.Client.CancelAsync(result.Id));
        await host.WaitForStateAsync(result.Id, TaskState.Cancelled);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }
}
