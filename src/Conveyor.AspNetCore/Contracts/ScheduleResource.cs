using System.Text.Json;
using System.Xml;
using Conveyor.Scheduling;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>A periodic schedule as the API shows it: its definition, state and next fire times.</summary>
public sealed record ScheduleResource
{
    /// <summary>Unique name.</summary>
    public required string Name { get; init; }
    /// <summary>Cron expression (5 or 6 fields), or null for an interval.</summary>
    public string? Cron { get; init; }
    /// <summary>Interval as an ISO 8601 duration (<c>PT10S</c>), or null for a cron expression.</summary>
    public string? Every { get; init; }
    /// <summary>Time zone of the cron expression.</summary>
    public required string TimeZone { get; init; }
    /// <summary>The task each tick enqueues.</summary>
    public required string Task { get; init; }
    /// <summary>Its arguments.</summary>
    public JsonElement? Args { get; init; }
    /// <summary>Queue.</summary>
    public required string Queue { get; init; }
    /// <summary>Priority.</summary>
    public int Priority { get; init; }
    /// <summary>Attempts in all, or null for the task's default.</summary>
    public int? MaxAttempts { get; init; }
    /// <summary>Time limit of one attempt (ISO 8601), or null.</summary>
    public string? Timeout { get; init; }
    /// <summary>A tick's task expires this long after its tick (ISO 8601), or null.</summary>
    public string? ExpiresAfter { get; init; }
    /// <summary><c>fireOnce</c>, <c>skip</c> or <c>fireAll</c>.</summary>
    public required string Misfire { get; init; }
    /// <summary>How late a tick may be reached and still count as on time (ISO 8601).</summary>
    public required string MisfireGrace { get; init; }
    /// <summary>With <c>fireAll</c>, most missed ticks fired at once.</summary>
    public int MaxCatchUp { get; init; }
    /// <summary>Whether its ticks are held back.</summary>
    public bool Paused { get; init; }
    /// <summary><c>api</c>, <c>code</c> or <c>configuration</c>.</summary>
    public required string Source { get; init; }
    /// <summary>Time of the last tick that enqueued a task.</summary>
    public DateTimeOffset? LastFireAt { get; init; }
    /// <summary>The task of the last tick.</summary>
    public Guid? LastTaskId { get; init; }
    /// <summary>Ticks dropped as missed, in all.</summary>
    public long Missed { get; init; }
    /// <summary>The next five ticks (none while paused).</summary>
    public required IReadOnlyList<DateTimeOffset> NextFireTimes { get; init; }
    /// <summary>When it was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>When it last changed (fires not counted).</summary>
    public DateTimeOffset UpdatedAt { get; init; }

    /// <summary>The resource of <paramref name="schedule"/> as of <paramref name="now"/>.</summary>
    public static ScheduleResource From(Schedule schedule, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        var d = schedule.Definition;
        return new()
        {
            Name = d.Name,
            Cron = d.Cron,
            Every = Iso(d.Every),
            TimeZone = d.TimeZone,
            Task = d.Task,
            Args = TaskResource.EmbeddedJson(d.Args),
            Queue = d.Queue,
            Priority = d.Priority,
            MaxAttempts = d.MaxAttempts,
            Timeout = Iso(d.Timeout),
            ExpiresAfter = Iso(d.ExpiresAfter),
            Misfire = JsonNamingPolicy.CamelCase.ConvertName(d.Misfire.ToString()),
            MisfireGrace = Iso(d.MisfireGrace)!,
            MaxCatchUp = d.MaxCatchUp,
            Paused = schedule.Paused,
            Source = JsonNamingPolicy.CamelCase.ConvertName(schedule.Source.ToString()),
            LastFireAt = schedule.LastFireAt,
            LastTaskId = schedule.LastTaskId,
            Missed = schedule.Missed,
            NextFireTimes = schedule.NextFireTimes(now, 5),
            CreatedAt = schedule.CreatedAt,
            UpdatedAt = schedule.UpdatedAt,
        };
    }

    private static string? Iso(TimeSpan? duration) => duration is { } d ? XmlConvert.ToString(d) : null;
}
