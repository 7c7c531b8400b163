namespace Conveyor;

/// <summary>
/// The states of a task. See docs/state_machine.md for the transitions.
/// Terminal states: <see cref="Succeeded"/>, <see cref="Dead"/>, <see cref="Cancelled"/>, <see cref="Expired"/>.
/// </summary>
/// <remarks>The numeric values are stored by backends: never renumber them.</remarks>
public enum TaskState
{
    /// <summary>Waiting for its not-before time (ETA or delay).</summary>
    Scheduled = 0,
    /// <summary>Ready to be fetched by a worker.</summary>
    Queued = 1,
    /// <summary>Leased by a worker and running.</summary>
    Running = 2,
    /// <summary>Finished without error. Terminal.</summary>
    Succeeded = 3,
    /// <summary>Failed an attempt and waits for its next one (a scheduled retry).</summary>
    Retrying = 4,
    /// <summary>Out of attempts, or failed permanently. Terminal; can be retried by hand.</summary>
    Dead = 5,
    /// <summary>Revoked before it finished. Terminal.</summary>
    Cancelled = 6,
    /// <summary>Not started before its expiry. Terminal.</summary>
    Expired = 7,
    /// <summary>A workflow step that waits for the steps it runs after; made <see cref="Queued"/> by the completion of the
    /// last of them, in the same transaction or script (docs/workflows.md).</summary>
    Pending = 8,
}

/// <summary>Helpers over <see cref="TaskState"/>.</summary>
public static class TaskStates
{
    /// <summary>Whether nothing further happens to a task in this state, unless retried by hand.</summary>
    public static bool IsTerminal(this TaskState state) =>
        state is TaskState.Succeeded or TaskState.Dead or TaskState.Cancelled or TaskState.Expired;

    /// <summary>The lower-case name used in the HTTP API and the CLI.</summary>
    public static string ToApiName(this TaskState state) => state switch
    {
        TaskState.Scheduled => "scheduled",
        TaskState.Queued => "queued",
        TaskState.Running => "running",
        TaskState.Succeeded => "succeeded",
        TaskState.Retrying => "retrying",
        TaskState.Dead => "dead",
        TaskState.Cancelled => "cancelled",
        TaskState.Expired => "expired",
        TaskState.Pending => "pending",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>Parses a lower-case API name; false when unknown.</summary>
    public static bool TryParseApiName(string? name, out TaskState state)
    {
        foreach (var candidate in Enum.GetValues<TaskState>())
        {
            if (string.Equals(candidate.ToApiName(), name, StringComparison.OrdinalIgnoreCase))
            {
                state = candidate;
                return true;
            }
        }
        state = default;
        return false;
    }
}
