using System.Reflection;
using Conveyor.Backends;
using Conveyor.Tests.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>A lease lost on the worker's side (its local deadline passed while extensions failed) after its start was
/// recorded, but before its handler ran, gives its attempt back: otherwise the backend, which still held it, would count
/// an interrupted attempt for a handler that never ran (issue 10: no task dies without having run).</summary>
public sealed class LeaseLostBeforeStartTests
{
    [Fact]
    public async Task A_lease_lost_here_after_its_start_was_recorded_and_before_its_handler_ran_spends_no_attempt()
    {
        var logs = new CapturingLoggerProvider();
        StartHold? hold = null;
        await using var host = new EngineHost(c =>
            {
                c.Services.AddSingleton<ILoggerProvider>(logs);
                c.AddNoopTask();
            },
            o =>
            {
                o.Worker.Concurrency = 1;
                // The worker counts a lease lost 4.5 s after its fetch (a tenth less); the backend would take it back at 5 s, but
                // its reaper is held (below), so that it still holds the lease when the start arrives, however slow the run.
                o.Worker.LeaseDuration = TimeSpan.FromSeconds(5);
            },
            inner =>
            {
                var queue = StartHold.Wrap(inner.Queue);
                hold = (StartHold)(object)queue;
                return new WatchedBackend(inner, queue);
            });

        // A task whose last lease lapsed, so that its next start is recorded before its handler runs
        // (Lease.RecordStartFirst): the worker waits for that write.
        var result = await host.Client.EnqueueAsync(NoopTask.Name, options: new EnqueueOptions { MaxAttempts = 1 });
        var ghost = await host.Backend.Queue.FetchAsync(new FetchRequest
        {
            WorkerId = "ghost",
            Queues = [new QueueWeight("default")],
            MaxCount = 1,
            LeaseDuration = TimeSpan.FromMinutes(1),
        }, CancellationToken.None);
        Assert.Single(ghost);
        await host.Backend.AbandonLeasesAsync("ghost", CancellationToken.None);

        // The backend goes out of reach for extensions, and the start's write is held past the worker's deadline.
        hold!.Outage = true;
        hold.HoldStarts = true;
        hold.HoldReaper = true;
        await host.StartAsync();
        await hold.StartEntered.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await WaitUntilAsync(() => logs.Entries.Any(e => e.Message.Contains($"Lease of task {result.Id} was lost", StringComparison.Ordinal)),
            "the worker to count the lease lost");

        // The backend still holds the lease (its reaper is held): the start is recorded now, for a handler that will not run
        // here. Without the worker's give-back the lease would stay held until the reaper ran, then end as an interrupted
        // attempt; with the reaper held, the task would never succeed.
        hold.Outage = false;
        hold.ReleaseStarts();

        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
        Assert.Equal(1, record.Attempts);
        Assert.DoesNotContain(record.Errors, e => e.Error.Type == LeaseRules.InterruptedErrorType);
        Assert.Empty(hold.HeldStartsLost!);
        Assert.Contains(record.Errors, e => e.Error.Type == "Conveyor.LeaseLostBeforeStart");
    }

    [Fact]
    public async Task A_lease_lost_while_its_start_waited_for_room_in_the_writer_has_no_start_recorded()
    {
        // Starts beside the handler (a first lease: no lapse before) go through the writer's bounded channel. While the
        // backend is slow the channel fills, a runner waits to put a start in, and the lease can pass its deadline
        // there: its handler then does not run, and its start must not be recorded.
        var logs = new CapturingLoggerProvider();
        StartHold? hold = null;
        await using var host = new EngineHost(c =>
            {
                c.Services.AddSingleton<ILoggerProvider>(logs);
                c.AddNoopTask();
                c.AddTask<GatedTask>(GatedTask.Name);
            },
            o =>
            {
                // The channel holds 2 × 1 + 2 = 4 writes.
                o.Worker.Concurrency = 2;
                o.Worker.CompletionBatchSize = 1;
                o.Worker.LeaseDuration = TimeSpan.FromSeconds(5);
            },
            inner =>
            {
                var queue = StartHold.Wrap(inner.Queue);
                hold = (StartHold)(object)queue;
                // From the start: no lease is extended, and the first completion holds the writer.
                hold.Outage = true;
                hold.HoldCompletions = true;
                return new WatchedBackend(inner, queue);
            });
        await host.StartAsync();

        // The writer is held in its first completion's write.
        await host.Client.EnqueueAsync(NoopTask.Name);
        await hold!.CompletionEntered.Task.WaitAsync(TimeSpan.FromSeconds(20));
        // One runner waits at the gate (its start is the channel's first write); the other puts in a completion without a start (no
        // handler here), a no-op task's start and completion (the channel is full), then waits to put in the start of
        // the task under test.
        await host.Client.EnqueueAsync(GatedTask.Name);
        await host.Probe.Started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        var results = await host.Client.EnqueueManyAsync(
        [
            new TaskRequest("test.no-handler-here"),
            new TaskRequest(NoopTask.Name),
            new TaskRequest(NoopTask.Name) { Options = new EnqueueOptions { MaxAttempts = 1 } },
        ]);
        var id = results[2].Id;
        await WaitUntilAsync(() => logs.Entries.Any(e => e.Message.Contains($"Lease of task {id} was lost", StringComparison.Ordinal)),
            "the worker to count the lease lost");

        // The backend still holds the lease (until 5 s) when the writer goes on.
        hold!.Outage = false;
        hold.ReleaseCompletions();

        var record = await host.WaitForStateAsync(id, TaskState.Succeeded);
        Assert.Equal(1, record.Attempts);
        Assert.DoesNotContain(record.Errors, e => e.Error.Type == LeaseRules.InterruptedErrorType);
        // Mostly the runner rules the start out before the writer takes it (no start written); on a slow machine the
        // writer may take it first, and the attempt is then given back (Conveyor.LeaseLostBeforeStart). Either way, no
        // attempt was spent for the handler that did not run.
        host.Probe.Gate.TrySetResult();
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

/// <summary>The queue role as it is, except that lease extensions fail while <see cref="Outage"/> is set, starts wait
/// while <see cref="HoldStarts"/> is set, until <see cref="ReleaseStarts"/>, and completions while
/// <see cref="HoldCompletions"/> is set, until <see cref="ReleaseCompletions"/>.</summary>
public class StartHold : DispatchProxy
{
    private IQueueBackend _inner = null!;
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly TaskCompletionSource _releaseCompletions = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private volatile bool _outage;
    private volatile bool _holdStarts;
    private volatile bool _holdCompletions;
    private volatile bool _holdReaper;

    public bool Outage { get => _outage; set => _outage = value; }

    public bool HoldStarts { get => _holdStarts; set => _holdStarts = value; }

    public bool HoldCompletions { get => _holdCompletions; set => _holdCompletions = value; }

    /// <summary>While set, the reaper finds no expired lease (the backend keeps every lease until it is ended otherwise).</summary>
    public bool HoldReaper { get => _holdReaper; set => _holdReaper = value; }

    /// <summary>Set when a completion arrived and waits.</summary>
    public TaskCompletionSource CompletionEntered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Set when a start arrived and waits.</summary>
    public TaskCompletionSource StartEntered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal static IQueueBackend Wrap(IQueueBackend inner)
    {
        var proxy = Create<IQueueBackend, StartHold>();
        ((StartHold)(object)proxy)._inner = inner;
        return proxy;
    }

    public void ReleaseStarts()
    {
        HoldStarts = false;
        _release.TrySetResult();
    }

    public void ReleaseCompletions()
    {
        HoldCompletions = false;
        _releaseCompletions.TrySetResult();
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        switch (targetMethod!.Name)
        {
            case nameof(IQueueBackend.ExtendLeasesAsync) when Outage:
                return Task.FromException<LeaseExtension>(new IOException("the backend cannot be reached (test)"));
            case nameof(IQueueBackend.StartAsync) when HoldStarts:
                return StartLaterAsync(targetMethod, args);
            case nameof(IQueueBackend.CompleteAsync) when HoldCompletions:
                return CompleteLaterAsync(targetMethod, args);
            case nameof(IQueueBackend.RequeueExpiredLeasesAsync) when HoldReaper:
                return Task.FromResult(LeaseSweep.None);
            default:
                return Call(targetMethod, args);
        }
    }

    /// <summary>The backend's answer to the starts held and then released: the leases it no longer held.</summary>
    public IReadOnlyList<LeaseRef>? HeldStartsLost { get; private set; }

    private async Task<IReadOnlyList<LeaseRef>> StartLaterAsync(MethodInfo method, object?[]? args)
    {
        StartEntered.TrySetResult();
        await _release.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var lost = await (Task<IReadOnlyList<LeaseRef>>)Call(method, args)!;
        HeldStartsLost = lost;
        return lost;
    }

    private async Task<IReadOnlyList<CompletionOverride>> CompleteLaterAsync(MethodInfo method, object?[]? args)
    {
        CompletionEntered.TrySetResult();
        await _releaseCompletions.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return await (Task<IReadOnlyList<CompletionOverride>>)Call(method, args)!;
    }

    private object? Call(MethodInfo method, object?[]? args)
    {
        return QueueProxy.Forward(_inner, method, args);
    }
}
