namespace Conveyor.Scheduling;

/// <summary>What a schedule does with ticks it missed (the leader was down, or every process was): a tick is missed
/// when the leader reaches it later than <see cref="ScheduleDefinition.MisfireGrace"/> after its time.</summary>
public enum MisfirePolicy
{
    /// <summary>Fire one task for all the missed ticks, at the latest of them (Celery beat's and Hangfire's behaviour).</summary>
    FireOnce,
    /// <summary>Drop missed ticks; fire only those reached within the grace.</summary>
    Skip,
    /// <summary>Fire each missed tick, the latest <see cref="ScheduleDefinition.MaxCatchUp"/> of them.</summary>
    FireAll,
}

/// <summary>Where a schedule was defined.</summary>
public enum ScheduleSource
{
    /// <summary>Created through the HTTP API or <see cref="IScheduleClient"/>.</summary>
    Api,
    /// <summary>Declared in code (<c>AddSchedule</c>): the leader writes it at the start of each term.</summary>
    Code,
    /// <summary>Declared in configuration (<c>Conveyor:Schedules</c>): the leader writes it at the start of each term.</summary>
    Configuration,
}

/// <summary>
/// A periodic schedule: when it fires (a cron expression in a time zone, or a fixed interval) and the task each tick
/// enqueues. Every tick is enqueued once, with an idempotency key made of the schedule's name and the tick's time.
/// </summary>
public sealed record ScheduleDefinition
{
    /// <summary>Unique name: 1 to 100 letters, digits, <c>.</c>, <c>-</c> or <c>_</c>.</summary>
    public required string Name { get; init; }

    /// <summary>A cron expression: five fields (minute precision) or six (seconds first), as Cronos reads them, e.g.
    /// <c>0 0 3 * * *</c> for 03:00:00 every day. Exclusive with <see cref="Every"/>.</summary>
    public string? Cron { get; init; }

    /// <summary>A fixed interval of at least one second, counted from the schedule's anchor (the second it was created or
    /// its timing last changed). Exclusive with <see cref="Cron"/>.</summary>
    public TimeSpan? Every { get; init; }

    /// <summary>IANA (or Windows) time zone the cron expression is read in; daylight-saving changes follow Cronos (a skipped
    /// local time fires at the jump, a repeated one once). Default UTC.</summary>
    public string TimeZone { get; init; } = "UTC";

    /// <summary>The task each tick enqueues.</summary>
    public required string Task { get; init; }

    /// <summary>Its arguments as JSON text, or null.</summary>
    public string? Args { get; init; }

    /// <summary>Queue; default <c>default</c>.</summary>
    public string Queue { get; init; } = QueueNames.Default;

    /// <summary>Priority in [-100, 100].</summary>
    public int Priority { get; init; }

    /// <summary>Attempts in all; null for the task's default.</summary>
    public int? MaxAttempts { get; init; }

    /// <summary>Time limit of one attempt; null for the task's default.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>A tick's task expires, unstarted, this long after its tick; null for never. Keeps a backlog of a
    /// frequent schedule from piling up behind a stopped worker.</summary>
    public TimeSpan? ExpiresAfter { get; init; }

    /// <summary>What to do with missed ticks. Default <see cref="MisfirePolicy.FireOnce"/>.</summary>
    public MisfirePolicy Misfire { get; init; } = MisfirePolicy.FireOnce;

    /// <summary>How late a tick may be reached and still count as on time. Default 1 min.</summary>
    public TimeSpan MisfireGrace { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>With <see cref="MisfirePolicy.FireAll"/>, most missed ticks fired at once (the latest ones). Default 100.</summary>
    public int MaxCatchUp { get; init; } = 100;

    /// <summary>Whether <paramref name="other"/> fires at the same times (so that a change keeps the schedule's place).</summary>
    public bool SameTiming(ScheduleDefinition other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Cron == other.Cron && Every == other.Every && TimeZone == other.TimeZone;
    }
}
