using System.Text.Json;
using System.Text.Json.Serialization;
using Conveyor.Backends;

namespace Conveyor.Scheduling;

/// <summary>A schedule with its state: paused or not, which ticks are done, and the last one fired.</summary>
public sealed record Schedule
{
    /// <summary>What it runs and when.</summary>
    public required ScheduleDefinition Definition { get; init; }

    /// <summary>Where it was defined.</summary>
    public ScheduleSource Source { get; init; }

    /// <summary>Whether ticks are held back. Ticks that fall while paused are never fired.</summary>
    public bool Paused { get; init; }

    /// <summary>Ticks up to this instant are done (fired, skipped, or before the schedule existed or was resumed).</summary>
    public required DateTimeOffset DoneUntil { get; init; }

    /// <summary>Interval ticks count from here: the second the schedule was created or its timing last changed.</summary>
    public required DateTimeOffset Anchor { get; init; }

    /// <summary>Time of the last tick that enqueued a task, or null.</summary>
    public DateTimeOffset? LastFireAt { get; init; }

    /// <summary>The task the last tick enqueued (or found already enqueued under its key), or null.</summary>
    public Guid? LastTaskId { get; init; }

    /// <summary>Ticks dropped as missed, in all (by <see cref="MisfirePolicy"/>).</summary>
    public long Missed { get; init; }

    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>When it last changed (not counting fires).</summary>
    public required DateTimeOffset UpdatedAt { get; init; }

    /// <summary>The stored version this was read at (0 before it is stored).</summary>
    [JsonIgnore]
    public long Version { get; init; }

    /// <summary>Its timing.</summary>
    public ScheduleTiming Timing() => ScheduleTiming.For(Definition, Anchor);

    /// <summary>The next <paramref name="count"/> ticks not done yet, as of <paramref name="now"/> (ticks the leader has
    /// not reached yet within the misfire grace included); none while paused.</summary>
    public IReadOnlyList<DateTimeOffset> NextFireTimes(DateTimeOffset now, int count)
    {
        if (Paused)
        {
            return [];
        }
        var graceStart = now - Definition.MisfireGrace;
        return Timing().Next(DoneUntil > graceStart ? DoneUntil : graceStart, count);
    }

    /// <summary>The idempotency key of the task fired for <paramref name="tick"/>: the same for every process and every
    /// leader, so that a tick enqueued twice (a leader change between enqueue and recording the fire) makes one task.</summary>
    public static string TickKey(string name, DateTimeOffset tick) =>
        $"conveyor:schedule:{name}:{tick.ToUnixTimeMilliseconds()}";

    /// <summary>Header naming the schedule on each task it enqueues.</summary>
    public const string ScheduleHeader = "conveyor-schedule";

    /// <summary>Header holding the tick's time (ISO 8601, UTC) on each task a schedule enqueues.</summary>
    public const string TickHeader = "conveyor-schedule-tick";

    internal StoredSchedule ToStored(long version) =>
        new(Definition.Name, version, JsonSerializer.Serialize(this, ScheduleJson.Options));

    internal static Schedule FromStored(StoredSchedule stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        var schedule = JsonSerializer.Deserialize<Schedule>(stored.Document, ScheduleJson.Options)
            ?? throw new InvalidDataException($"schedule '{stored.Name}' is stored as null");
        return schedule with { Version = stored.Version };
    }
}

/// <summary>How schedules are written in the store: camelCase, enums as names, durations as TimeSpan text.</summary>
internal static class ScheduleJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}
