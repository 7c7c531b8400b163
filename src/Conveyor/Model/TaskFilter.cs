namespace Conveyor;

/// <summary>
/// The finished tasks a bulk retry (<see cref="ITaskClient.RetryManyAsync"/>) or purge (<see cref="ITaskClient.PurgeAsync"/>)
/// acts on: every task in <see cref="State"/> that matches every other filter given.
/// </summary>
public sealed record TaskFilter
{
    /// <summary>Most tasks one call may act on: 10,000,000.</summary>
    public const int MaxLimit = 10_000_000;

    /// <summary>The state: dead, cancelled or expired for a retry; those or succeeded for a purge. Default dead.</summary>
    public TaskState State { get; init; } = TaskState.Dead;

    /// <summary>Only tasks with this name.</summary>
    public string? Task { get; init; }

    /// <summary>Only tasks in this queue.</summary>
    public string? Queue { get; init; }

    /// <summary>Only tasks that finished at or after this time.</summary>
    public DateTimeOffset? FinishedAfter { get; init; }

    /// <summary>Only tasks that finished before this time.</summary>
    public DateTimeOffset? FinishedBefore { get; init; }

    /// <summary>Act on at most this many tasks, newest first; null for every match. 1 to <see cref="MaxLimit"/>.</summary>
    public int? Limit { get; init; }

    /// <summary>Whether a filter narrows the state: a task name, queue or finish time. The HTTP API and the CLI ask for an
    /// explicit <c>all</c> when none does, so that a bare call cannot empty or requeue a whole state by mistake.</summary>
    public bool IsNarrowed => Task is not null || Queue is not null || FinishedAfter is not null || FinishedBefore is not null;

    /// <summary>Whether <paramref name="record"/> matches: its state, name, queue and finish time.</summary>
    public bool Matches(TaskRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return record.State == State
            && (Task is null || string.Equals(record.Task, Task, StringComparison.Ordinal))
            && (Queue is null || string.Equals(record.Queue, Queue, StringComparison.Ordinal))
            && (FinishedAfter is not { } after || record.FinishedAt >= after)
            && (FinishedBefore is not { } before || record.FinishedAt < before);
    }

    /// <summary>The problems of this filter for a retry (<paramref name="purge"/> false) or a purge, each naming its field as
    /// the HTTP API does; empty when it is valid.</summary>
    public IReadOnlyList<FieldError> Validate(bool purge)
    {
        var errors = new List<FieldError>();
        var allowed = purge
            ? new[] { TaskState.Dead, TaskState.Cancelled, TaskState.Expired, TaskState.Succeeded }
            : [TaskState.Dead, TaskState.Cancelled, TaskState.Expired];
        if (!allowed.Contains(State))
        {
            errors.Add(new("state", $"'{State.ToApiName()}' tasks cannot be {(purge ? "purged" : "retried")}: give one of " +
                string.Join(", ", allowed.Select(s => s.ToApiName()))));
        }
        if (Task is not null && (Task.Length == 0 || Task.Length > TaskRequestValidator.MaxTaskNameLength))
        {
            errors.Add(new("task", $"must be 1 to {TaskRequestValidator.MaxTaskNameLength} characters"));
        }
        if (Queue is not null && !QueueNames.IsValid(Queue))
        {
            errors.Add(new("queue", $"'{Queue}' is not a valid queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'"));
        }
        if (FinishedAfter is { } after && FinishedBefore is { } before && after >= before)
        {
            errors.Add(new("finishedAfter", $"{after:O} is not before finishedBefore ({before:O}): no task could match"));
        }
        if (Limit is { } limit && (limit < 1 || limit > MaxLimit))
        {
            errors.Add(new("limit", $"{limit} is out of range [1, {MaxLimit}]"));
        }
        return errors;
    }
}
