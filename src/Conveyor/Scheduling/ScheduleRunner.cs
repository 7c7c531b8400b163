using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Scheduling;

/// <summary>
/// Leader-only: fires periodic schedules. Each pass reads every schedule, enqueues one task per due tick — with the
/// tick's idempotency key (<see cref="Schedule.TickKey"/>), so that a tick enqueued again by the next leader (this one
/// died between the enqueue and recording it) is the same task — applies the misfire policy to ticks reached late, and
/// records how far it got by compare-and-set. Then it sleeps until the next tick, at most <see cref="MaxPause"/>; a change
/// to any schedule, from any process, wakes it (<see cref="NotifierChannels.Schedules"/>). At the start of each term it
/// writes the schedules declared in code and configuration.
/// </summary>
internal sealed partial class ScheduleRunner(
    IConveyorBackend backend,
    ScheduleClient schedules,
    ITaskClient tasks,
    IEnumerable<DeclaredSchedule> declaredInCode,
    IOptions<ConveyorOptions> options,
    ILeadership leadership,
    TimeProvider time,
    ILogger<ScheduleRunner> logger) : LeaderOnlyService(leadership, time, logger)
{
    /// <summary>Longest sleep between passes: a change whose notification was lost is seen within it.</summary>
    public static TimeSpan MaxPause { get; } = TimeSpan.FromSeconds(5);

    /// <summary>Most on-time ticks of one schedule fired in one pass (a one-second schedule with a long grace); older ones
    /// count as missed.</summary>
    private const int MaxOnTimeTicks = 1000;

    private readonly TimeProvider _time = time;
    private readonly ILogger _logger = logger;
    private volatile TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IAsyncDisposable? _subscription;
    private CancellationToken _syncedTerm;
    private bool _synced;

    protected override string Name => "schedules";

    protected override Task WakeSignal => _changed.Task;

    protected override Task<TimeSpan> RunOnceAsync(CancellationToken leading) => PassAsync(leading);

    /// <summary>One pass: fires every due tick and returns how long to sleep. <paramref name="leading"/> is the term's
    /// token; a new one writes the declared schedules first.</summary>
    internal async Task<TimeSpan> PassAsync(CancellationToken leading)
    {
        _subscription ??= await backend.Notifier.SubscribeAsync(NotifierChannels.Schedules,
            _ => Interlocked.Exchange(ref _changed, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult(),
            leading).ConfigureAwait(false);
        if (!_synced || _syncedTerm != leading)
        {
            await schedules.SyncDeclaredAsync(Declared(), leading).ConfigureAwait(false);
            _syncedTerm = leading;
            _synced = true;
        }
        var all = await schedules.ListAsync(leading).ConfigureAwait(false);
        DateTimeOffset? next = null;
        foreach (var schedule in all)
        {
            if (schedule.Paused)
            {
                continue;
            }
            var now = _time.GetUtcNow();
            var doneUntil = await FireDueAsync(schedule, now, leading).ConfigureAwait(false);
            if (ScheduleTiming.For(schedule.Definition, schedule.Anchor).NextAfter(doneUntil) is { } tick && (next is null || tick < next))
            {
                next = tick;
            }
        }
        var pause = next is { } due ? due - _time.GetUtcNow() : MaxPause;
        return pause < TimeSpan.Zero ? TimeSpan.Zero : pause > MaxPause ? MaxPause : pause;
    }

    /// <summary>Fires the ticks of <paramref name="schedule"/> due by <paramref name="now"/> and records them; returns the
    /// instant up to which its ticks are done.</summary>
    private async Task<DateTimeOffset> FireDueAsync(Schedule schedule, DateTimeOffset now, CancellationToken leading)
    {
        if (schedule.DoneUntil >= now)
        {
            return schedule.DoneUntil;
        }
        var definition = schedule.Definition;
        var timing = ScheduleTiming.For(definition, schedule.Anchor);
        // A tick exactly MisfireGrace late is still on time: on-time ticks are those in (graceStart, now].
        var graceStart = now - definition.MisfireGrace - TimeSpan.FromTicks(1);
        var onTimeFrom = schedule.DoneUntil > graceStart ? schedule.DoneUntil : graceStart;
        var onTime = timing.Between(onTimeFrom, now, MaxOnTimeTicks, out var onTimeTotal);
        IReadOnlyList<DateTimeOffset> missed = [];
        long missedTotal = 0;
        if (schedule.DoneUntil < graceStart)
        {
            var keep = definition.Misfire switch
            {
                MisfirePolicy.FireAll => definition.MaxCatchUp,
                MisfirePolicy.FireOnce => 1,
                _ => 0,
            };
            var kept = timing.Between(schedule.DoneUntil, graceStart, Math.Max(keep, 1), out missedTotal);
            missed = keep == 0 ? [] : kept;
        }
        if (onTimeTotal == 0 && missedTotal == 0)
        {
            return schedule.DoneUntil;
        }
        var fire = missed.Concat(onTime).ToList();
        var dropped = missedTotal + onTimeTotal - fire.Count;
        if (dropped > 0)
        {
            LogMissed(definition.Name, dropped, definition.Misfire);
        }
        EnqueueResult? last = null;
        if (fire.Count > 0)
        {
            var requests = fire.Select(tick => TickRequest(definition, tick, Schedule.TickKey(definition.Name, tick))).ToList();
            try
            {
                var results = await tasks.EnqueueManyAsync(requests, leading).ConfigureAwait(false);
                last = results[^1];
            }
            catch (TaskValidationException ex)
            {
                // A schedule whose task the client refuses would fail every pass: its ticks are dropped, said once per pass.
                LogRefused(ex, definition.Name, fire.Count);
                dropped += fire.Count;
                fire.Clear();
            }
        }
        var lastTick = fire.Count > 0 ? fire[^1] : (DateTimeOffset?)null;
        await schedules.ChangeAsync(definition.Name, (current, _) => current.DoneUntil >= now
            ? current
            : current with
            {
                DoneUntil = now,
                LastFireAt = lastTick ?? current.LastFireAt,
                LastTaskId = last?.Id ?? current.LastTaskId,
                Missed = current.Missed + dropped,
            }, leading, announce: false).ConfigureAwait(false);
        return now;
    }

    /// <summary>The task request of one tick (or of a trigger, without a key).</summary>
    internal static TaskRequest TickRequest(ScheduleDefinition definition, DateTimeOffset tick, string? idempotencyKey) =>
        new(definition.Task, definition.Args, new EnqueueOptions
        {
            Queue = definition.Queue,
            Priority = definition.Priority,
            MaxAttempts = definition.MaxAttempts,
            Timeout = definition.Timeout,
            ExpiresAt = definition.ExpiresAfter is { } expires ? tick + expires : null,
            IdempotencyKey = idempotencyKey,
            // A trigger (no key) names its schedule but no tick.
            Headers = idempotencyKey is null
                ? new Dictionary<string, string> { [Schedule.ScheduleHeader] = definition.Name }
                : new Dictionary<string, string>
                {
                    [Schedule.ScheduleHeader] = definition.Name,
                    [Schedule.TickHeader] = tick.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                },
        });

    private IEnumerable<(ScheduleDefinition, ScheduleSource)> Declared()
    {
        foreach (var declared in declaredInCode)
        {
            yield return (declared.Definition, ScheduleSource.Code);
        }
        foreach (var (name, settings) in options.Value.Schedules)
        {
            yield return (settings.ToDefinition(name), ScheduleSource.Configuration);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        if (Interlocked.Exchange(ref _subscription, null) is { } subscription)
        {
            await subscription.DisposeAsync().ConfigureAwait(false);
        }
    }

    [LoggerMessage(70, LogLevel.Warning, "Schedule '{Schedule}': {Count} missed tick(s) not fired (misfire policy {Policy})")]
    private partial void LogMissed(string schedule, long count, MisfirePolicy policy);

    [LoggerMessage(71, LogLevel.Error, "Schedule '{Schedule}': the client refused its task; {Count} tick(s) dropped")]
    private partial void LogRefused(Exception exception, string schedule, int count);
}

/// <summary>A schedule declared in code with <c>AddSchedule</c>.</summary>
/// <param name="Definition">The schedule.</param>
public sealed record DeclaredSchedule(ScheduleDefinition Definition);
