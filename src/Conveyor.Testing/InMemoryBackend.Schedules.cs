using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend
{
    /// <inheritdoc />
    public Task<IReadOnlyList<StoredSchedule>> ListSchedulesAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult<IReadOnlyList<StoredSchedule>>([.. _storage.Schedules.Values]);
        }
    }

    /// <inheritdoc />
    public Task<StoredSchedule?> GetScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Schedules.GetValueOrDefault(name));
        }
    }

    /// <inheritdoc />
    public Task<bool> AddScheduleAsync(StoredSchedule schedule, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Schedules.TryAdd(schedule.Name, schedule));
        }
    }

    /// <inheritdoc />
    public Task<bool> ReplaceScheduleAsync(StoredSchedule schedule, long expectedVersion, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            if (!_storage.Schedules.TryGetValue(schedule.Name, out var current) || current.Version != expectedVersion)
            {
                return Task.FromResult(false);
            }
            _storage.Schedules[schedule.Name] = schedule;
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task<bool> DeleteScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Schedules.Remove(name));
        }
    }
}
