using Conveyor.Backends;
using Conveyor.Testing;
using Conveyor.Tests.Engine;
using Conveyor.Tests.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Supervision;

/// <summary>The hard time limit: the overdue attempt is recorded failed with <c>Conveyor.HardTimeLimit</c> (retried or
/// dead by its policy), the worker's other leases are handed back, and the process exits with its code.</summary>
public sealed class TimeLimitWatchdogTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static async Task<(InMemoryBackend Backend, WorkerStatus Status, TimeLimitWatchdog Watchdog, List<int> Exits, IReadOnlyList<Lease> Leases, FixedTime Time)> ArrangeAsync(
        int overdueMaxAttempts, Func<InMemoryBackend, IConveyorBackend>? wrap = null)
    {
        var time = new FixedTime(Now);
        var backend = new InMemoryBackend(time);
        var options = Options.Create(new ConveyorOptions { Worker = { Id = "worker-1", TimeLimit = TimeSpan.FromSeconds(10), SoftTimeLimit = TimeSpan.FromSeconds(5) } });
        var status = new WorkerStatus(options);
        await backend.Queue.EnqueueAsync(
        [
            new TaskMessage { Id = Guid.CreateVersion7(), Task = "hangs", MaxAttempts = overdueMaxAttempts, CreatedAt = Now },
            new TaskMessage { Id = Guid.CreateVersion7(), Task = "waits", MaxAttempts = 1, CreatedAt = Now },
        ], CancellationToken.None);
        var leases = await backend.Queue.FetchAsync(new FetchRequest
        {
            WorkerId = "worker-1",
            Queues = [new QueueWeight(QueueNames.Default)],
            MaxCount = 2,
            LeaseDuration = TimeSpan.FromMinutes(5),
        }, CancellationToken.None);
        Assert.Equal(2, leases.Count);
        var hangs = leases.Single(l => l.Message.Task == "hangs");
        await backend.Queue.StartAsync([hangs.Ref], CancellationToken.None);
        status.HandlerStarted(hangs, Now);
        var exits = new List<int>();
        // No worker runs here: there is no fetching to stop.
        var services = new ServiceCollection().BuildServiceProvider();
        var watchdog = new TimeLimitWatchdog(wrap?.Invoke(backend) ?? backend, options, status, time, services, NullLogger<TimeLimitWatchdog>.Instance) { Exit = exits.Add };
        return (backend, status, watchdog, exits, leases, time);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Its_thread_runs_only_with_a_hard_limit(bool hardLimit)
    {
        var options = Options.Create(new ConveyorOptions { Worker = { Id = "worker-1", SoftTimeLimit = TimeSpan.FromSeconds(5), TimeLimit = hardLimit ? TimeSpan.FromSeconds(10) : null } });
        using var watchdog = new TimeLimitWatchdog(new InMemoryBackend(TimeProvider.System), options, new WorkerStatus(options), TimeProvider.System,
            new ServiceCollection().BuildServiceProvider(), NullLogger<TimeLimitWatchdog>.Instance);

        await watchdog.StartAsync(CancellationToken.None);

        Assert.Equal(hardLimit, watchdog.IsWatching);
    }

    [Fact]
    public async Task Under_the_hard_limit_nothing_happens()
    {
        var (backend, _, watchdog, exits, leases, time) = await ArrangeAsync(overdueMaxAttempts: 1);
        time.Now = Now.AddSeconds(9);

        Assert.False(watchdog.Check());

        Assert.Empty(exits);
        Assert.All(leases, l => Assert.Equal(TaskState.Running, backend.Store.GetAsync(l.Message.Id, CancellationToken.None).Result!.State));
    }

    [Fact]
    public async Task Past_the_hard_limit_the_last_attempt_is_dead_the_other_lease_comes_back_unspent_and_the_process_exits()
    {
        var (backend, _, watchdog, exits, leases, time) = await ArrangeAsync(overdueMaxAttempts: 1);
        time.Now = Now.AddSeconds(10);

        Assert.True(watchdog.Check());

        Assert.Equal([WorkerExitCodes.HardTimeLimit], exits);
        var overdue = await backend.Store.GetAsync(leases.Single(l => l.Message.Task == "hangs").Message.Id, CancellationToken.None);
        Assert.Equal(TaskState.Dead, overdue!.State);
        Assert.Equal(TimeLimitWatchdog.ErrorType, overdue.Error?.Type);
        var other = await backend.Store.GetAsync(leases.Single(l => l.Message.Task == "waits").Message.Id, CancellationToken.None);
        // Never started, so handed back without spending its only attempt.
        Assert.Equal(TaskState.Queued, other!.State);
    }

    [Fact]
    public async Task Past_the_hard_limit_the_ended_attempt_is_announced_to_the_other_processes_before_the_exit()
    {
        var (backend, _, watchdog, exits, leases, time) = await ArrangeAsync(overdueMaxAttempts: 1);
        var events = new List<TaskEvent>();
        // Where other processes' bridges hear it: this process's own would not live to send it.
        await using var subscription = await SubscribeEventsAsync(backend, events);
        time.Now = Now.AddSeconds(10);

        Assert.True(watchdog.Check());

        Assert.Single(exits);
        var dead = Assert.Single(events);
        Assert.Equal(TaskEventKind.Dead, dead.Kind);
        Assert.Equal(leases.Single(l => l.Message.Task == "hangs").Message.Id, dead.TaskId);
        Assert.Equal(TimeLimitWatchdog.ErrorType, dead.Error?.Type);
        Assert.Equal("worker-1", dead.Origin);
        Assert.Equal(TimeSpan.FromSeconds(10), dead.Duration);
    }

    [Fact]
    public async Task Past_the_hard_limit_an_answer_that_names_a_lease_twice_loses_no_event()
    {
        // The backend's answer, doubled: the watchdog reads it by lease, as the worker does, and still announces the end.
        var (backend, _, watchdog, exits, leases, time) = await ArrangeAsync(overdueMaxAttempts: 3,
            inner => new WatchedBackend(inner, CompletionHook.Wrap(inner.Queue, answered: answer => [.. answer, .. answer])));
        var hangs = leases.Single(l => l.Message.Task == "hangs").Message.Id;
        Assert.Equal(CancelOutcome.Requested, await backend.Queue.CancelAsync(hangs, CancellationToken.None));
        var events = new List<TaskEvent>();
        await using var subscription = await SubscribeEventsAsync(backend, events);
        time.Now = Now.AddSeconds(10);

        Assert.True(watchdog.Check());

        Assert.Single(exits);
        // The retry asked for is the cancel asked before: its override, named twice, is one event.
        var cancelled = Assert.Single(events);
        Assert.Equal(TaskEventKind.Cancelled, cancelled.Kind);
        Assert.Equal(hangs, cancelled.TaskId);
    }

    [Fact]
    public async Task Past_the_hard_limit_an_attempt_with_attempts_left_is_retried()
    {
        var (backend, _, watchdog, exits, leases, time) = await ArrangeAsync(overdueMaxAttempts: 3);
        time.Now = Now.AddSeconds(11);

        Assert.True(watchdog.Check());

        var overdue = await backend.Store.GetAsync(leases.Single(l => l.Message.Task == "hangs").Message.Id, CancellationToken.None);
        Assert.Equal(TaskState.Retrying, overdue!.State);
        Assert.Equal(TimeLimitWatchdog.ErrorType, Assert.Single(overdue.Errors).Error.Type);
        Assert.Single(exits);
    }

    /// <summary>The task events this process announces to the others (the notifier's events channel), added to
    /// <paramref name="events"/> as they come.</summary>
    private static ValueTask<IAsyncDisposable> SubscribeEventsAsync(InMemoryBackend backend, List<TaskEvent> events) =>
        backend.Notifier.SubscribeAsync(NotifierChannels.Events, n =>
        {
            using var batch = System.Text.Json.JsonDocument.Parse(n.Payload);
            events.AddRange(batch.RootElement.EnumerateArray().Select(TaskEventJson.Read));
        }, CancellationToken.None);
}
