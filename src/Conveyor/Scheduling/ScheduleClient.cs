using Conveyor.Backends;

namespace Conveyor.Scheduling;

/// <summary>The default <see cref="IScheduleClient"/>: every change is a compare-and-set on the stored version, retried
/// on a conflict, and announced on <see cref="NotifierChannels.Schedules"/> so that the leader looks again at once.</summary>
internal sealed class ScheduleClient(IConveyorBackend backend, ITaskClient tasks, TimeProvider time) : IScheduleClient
{
    private const int MaxConflicts = 20;

    public async Task<IReadOnlyList<Schedule>> ListAsync(CancellationToken cancellationToken = default)
    {
        var stored = await backend.Schedules.ListSchedulesAsync(cancellationToken).ConfigureAwait(false);
        return stored.Select(Schedule.FromStored).ToList();
    }

    public async Task<Schedule?> GetAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return await backend.Schedules.GetScheduleAsync(name, cancellationToken).ConfigureAwait(false) is { } stored
            ? Schedule.FromStored(stored)
            : null;
    }

    public async Task<Schedule> CreateAsync(ScheduleDefinition definition, CancellationToken cancellationToken = default)
    {
        ScheduleDefinitionValidator.ThrowIfInvalid(definition);
        var schedule = New(definition, ScheduleSource.Api, time.GetUtcNow());
        if (!await backend.Schedules.AddScheduleAsync(schedule.ToStored(1), cancellationToken).ConfigureAwait(false))
        {
            throw new ScheduleValidationException([new FieldError("name", $"a schedule named '{definition.Name}' exists")]);
        }
        await AnnounceAsync(definition.Name, cancellationToken).ConfigureAwait(false);
        return schedule with { Version = 1 };
    }

    public Task<Schedule?> UpdateAsync(ScheduleDefinition definition, CancellationToken cancellationToken = default)
    {
        ScheduleDefinitionValidator.ThrowIfInvalid(definition);
        return ChangeAsync(definition.Name, (current, now) => Redefine(current, definition, current.Source, now), cancellationToken);
    }

    public Task<Schedule?> PauseAsync(string name, CancellationToken cancellationToken = default) =>
        ChangeAsync(name, (current, now) => current.Paused ? current : current with { Paused = true, UpdatedAt = now }, cancellationToken);

    public Task<Schedule?> ResumeAsync(string name, CancellationToken cancellationToken = default) =>
        ChangeAsync(name, (current, now) => current.Paused
            ? current with { Paused = false, DoneUntil = Later(current.DoneUntil, now), UpdatedAt = now }
            : current, cancellationToken);

    public async Task<EnqueueResult?> TriggerAsync(string name, CancellationToken cancellationToken = default)
    {
        if (await GetAsync(name, cancellationToken).ConfigureAwait(false) is not { } schedule)
        {
            return null;
        }
        var now = time.GetUtcNow();
        // A trigger is not a tick: no tick key, so triggering twice enqueues twice, as asked.
        return await tasks.EnqueueAsync(ScheduleRunner.TickRequest(schedule.Definition, now, idempotencyKey: null), cancellationToken).ConfigureAwait(false);
    }

    public async Task<bool> DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        var deleted = await backend.Schedules.DeleteScheduleAsync(name, cancellationToken).ConfigureAwait(false);
        if (deleted)
        {
            await AnnounceAsync(name, cancellationToken).ConfigureAwait(false);
        }
        return deleted;
    }

    /// <summary>Writes the schedules declared in code and configuration: added when missing, redefined when they differ
    /// (state kept). Run by the leader at the start of each term, so the leader's declarations win in a rolling update.</summary>
    internal async Task SyncDeclaredAsync(IEnumerable<(ScheduleDefinition Definition, ScheduleSource Source)> declared, CancellationToken cancellationToken)
    {
        foreach (var (definition, source) in declared)
        {
            var now = time.GetUtcNow();
            if (await backend.Schedules.AddScheduleAsync(New(definition, source, now).ToStored(1), cancellationToken).ConfigureAwait(false))
            {
                continue;
            }
            await ChangeAsync(definition.Name, (current, at) => current.Definition == definition && current.Source == source
                ? current
                : Redefine(current, definition, source, at), cancellationToken, announce: false).ConfigureAwait(false);
        }
    }

    /// <summary>Applies <paramref name="change"/> to the stored schedule by compare-and-set, reading again after a conflict.
    /// <paramref name="change"/> returns the schedule unchanged (same instance) to write nothing. Null when there is no
    /// such schedule.</summary>
    internal async Task<Schedule?> ChangeAsync(string name, Func<Schedule, DateTimeOffset, Schedule> change, CancellationToken cancellationToken, bool announce = true)
    {
        ArgumentNullException.ThrowIfNull(name);
        for (var conflicts = 0; ; conflicts++)
        {
            if (await GetAsync(name, cancellationToken).ConfigureAwait(false) is not { } current)
            {
                return null;
            }
            var changed = change(current, time.GetUtcNow());
            if (ReferenceEquals(changed, current))
            {
                return current;
            }
            var version = current.Version + 1;
            if (await backend.Schedules.ReplaceScheduleAsync(changed.ToStored(version), current.Version, cancellationToken).ConfigureAwait(false))
            {
                if (announce)
                {
                    await AnnounceAsync(name, cancellationToken).ConfigureAwait(false);
                }
                return changed with { Version = version };
            }
            if (conflicts == MaxConflicts)
            {
                throw new InvalidOperationException($"schedule '{name}' kept changing while it was being written ({MaxConflicts} conflicts)");
            }
        }
    }

    private static Schedule New(ScheduleDefinition definition, ScheduleSource source, DateTimeOffset now) => new()
    {
        Definition = definition,
        Source = source,
        DoneUntil = now,
        Anchor = now,
        CreatedAt = now,
        UpdatedAt = now,
    };

    private static Schedule Redefine(Schedule current, ScheduleDefinition definition, ScheduleSource source, DateTimeOffset now) =>
        current.Definition.SameTiming(definition)
            ? current with { Definition = definition, Source = source, UpdatedAt = now }
            // New timing: its ticks count from now, none of the old or new timing's past ticks fire.
            : current with { Definition = definition, Source = source, Anchor = now, DoneUntil = Later(current.DoneUntil, now), UpdatedAt = now };

    private static DateTimeOffset Later(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    private async Task AnnounceAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            await backend.Notifier.PublishAsync(NotifierChannels.Schedules, name, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            // The change is stored; the leader sees it at its next pass (at most ScheduleRunner.MaxPause) instead of at once.
        }
    }
}
