namespace Conveyor.Scheduling;

/// <summary>Reads and changes periodic schedules (the HTTP API's <c>/api/v1/schedules</c> and <c>conveyor schedules</c>
/// use it). Registered by <c>AddConveyor</c>; thread-safe. The leader fires the ticks (<see cref="ScheduleRunner"/>).</summary>
public interface IScheduleClient
{
    /// <summary>Every schedule, by name.</summary>
    Task<IReadOnlyList<Schedule>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>One schedule, or null.</summary>
    Task<Schedule?> GetAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Creates a schedule; its ticks count from now.</summary>
    /// <exception cref="ScheduleValidationException">A field is not accepted, or a schedule of that name exists (field
    /// <c>name</c>).</exception>
    Task<Schedule> CreateAsync(ScheduleDefinition definition, CancellationToken cancellationToken = default);

    /// <summary>Replaces a schedule's definition, keeping its state; a change of timing counts ticks from now. Null when
    /// there is no such schedule.</summary>
    /// <exception cref="ScheduleValidationException">A field is not accepted.</exception>
    Task<Schedule?> UpdateAsync(ScheduleDefinition definition, CancellationToken cancellationToken = default);

    /// <summary>Holds a schedule's ticks back; null when there is no such schedule.</summary>
    Task<Schedule?> PauseAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Lets a paused schedule fire again from now (ticks that fell while it was paused are not fired); null when
    /// there is no such schedule.</summary>
    Task<Schedule?> ResumeAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Enqueues the schedule's task now, outside its ticks (paused or not); null when there is no such schedule.</summary>
    Task<EnqueueResult?> TriggerAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Deletes a schedule; false when there was none. Tasks it enqueued stay.</summary>
    Task<bool> DeleteAsync(string name, CancellationToken cancellationToken = default);
}
