namespace Conveyor.Backends;

/// <summary>One periodic schedule as a backend stores it: its name, a version that every change increases, and a document
/// (JSON) that only the core reads. The backend keeps the three together and compares versions; what a schedule means —
/// its timing, task, state and last fire — is the core's (<see cref="Conveyor.Scheduling.Schedule"/>).</summary>
/// <param name="Name">The schedule's name, unique per backend.</param>
/// <param name="Version">1 when added; each replace stores the version it was given.</param>
/// <param name="Document">The schedule as JSON.</param>
public sealed record StoredSchedule(string Name, long Version, string Document);

/// <summary>
/// The schedule-state part of the coordination role: a small versioned document store keyed by schedule name. Every
/// change is a compare-and-set on <see cref="StoredSchedule.Version"/>, so the leader advancing a schedule's last fire and
/// an API call pausing it never overwrite each other; exactly-once firing itself rests on each tick's idempotency key
/// (docs/scheduling.md), not on this store.
/// </summary>
public interface IScheduleStore
{
    /// <summary>Every schedule, ordered by name (ordinal).</summary>
    Task<IReadOnlyList<StoredSchedule>> ListSchedulesAsync(CancellationToken cancellationToken);

    /// <summary>One schedule, or null.</summary>
    Task<StoredSchedule?> GetScheduleAsync(string name, CancellationToken cancellationToken);

    /// <summary>Adds <paramref name="schedule"/> (its version is stored as given, normally 1); false, changing nothing,
    /// when a schedule of that name exists.</summary>
    Task<bool> AddScheduleAsync(StoredSchedule schedule, CancellationToken cancellationToken);

    /// <summary>Replaces the schedule of that name with <paramref name="schedule"/> if its stored version is
    /// <paramref name="expectedVersion"/>; false, changing nothing, when it was changed meanwhile or is gone.</summary>
    Task<bool> ReplaceScheduleAsync(StoredSchedule schedule, long expectedVersion, CancellationToken cancellationToken);

    /// <summary>Deletes a schedule; false when there was none.</summary>
    Task<bool> DeleteScheduleAsync(string name, CancellationToken cancellationToken);
}
