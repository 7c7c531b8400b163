namespace Conveyor.Scheduling;

/// <summary>A schedule declared in configuration, under <c>Conveyor:Schedules:{name}</c> (durations as <c>00:00:10</c>,
/// as every other duration in configuration). See <see cref="ScheduleDefinition"/> for each setting.</summary>
public sealed class ScheduleSettings
{
    /// <summary>Cron expression (5 or 6 fields). Exclusive with <see cref="Every"/>.</summary>
    public string? Cron { get; set; }

    /// <summary>Fixed interval, at least 00:00:01. Exclusive with <see cref="Cron"/>.</summary>
    public TimeSpan? Every { get; set; }

    /// <summary>Time zone of the cron expression. Default UTC.</summary>
    public string TimeZone { get; set; } = "UTC";

    /// <summary>The task to enqueue.</summary>
    public string? Task { get; set; }

    /// <summary>Its arguments as JSON text.</summary>
    public string? Args { get; set; }

    /// <summary>Queue. Default <c>default</c>.</summary>
    public string Queue { get; set; } = QueueNames.Default;

    /// <summary>Priority in [-100, 100].</summary>
    public int Priority { get; set; }

    /// <summary>Attempts in all; unset for the task's default.</summary>
    public int? MaxAttempts { get; set; }

    /// <summary>Time limit of one attempt.</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>A tick's task expires, unstarted, this long after its tick.</summary>
    public TimeSpan? ExpiresAfter { get; set; }

    /// <summary>FireOnce (default), Skip or FireAll.</summary>
    public MisfirePolicy Misfire { get; set; } = MisfirePolicy.FireOnce;

    /// <summary>How late a tick may be reached and still count as on time. Default 00:01:00.</summary>
    public TimeSpan MisfireGrace { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>With FireAll, most missed ticks fired at once. Default 100.</summary>
    public int MaxCatchUp { get; set; } = 100;

    /// <summary>The definition named <paramref name="name"/>.</summary>
    public ScheduleDefinition ToDefinition(string name) => new()
    {
        Name = name,
        Cron = string.IsNullOrWhiteSpace(Cron) ? null : Cron,
        Every = Every,
        TimeZone = TimeZone,
        Task = Task ?? "",
        Args = string.IsNullOrWhiteSpace(Args) ? null : Args,
        Queue = Queue,
        Priority = Priority,
        MaxAttempts = MaxAttempts,
        Timeout = Timeout,
        ExpiresAfter = ExpiresAfter,
        Misfire = Misfire,
        MisfireGrace = MisfireGrace,
        MaxCatchUp = MaxCatchUp,
    };
}
