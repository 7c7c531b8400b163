using Conveyor.Backends;

namespace Conveyor;

/// <summary>What happened to a task.</summary>
public enum TaskEventKind
{
    /// <summary>Stored by an enqueue (or queued again by a manual retry): <see cref="TaskState.Queued"/> or
    /// <see cref="TaskState.Scheduled"/>.</summary>
    Enqueued,
    /// <summary>A worker started an attempt.</summary>
    Started,
    /// <summary>The attempt succeeded.</summary>
    Succeeded,
    /// <summary>The attempt failed and the task will run again (<see cref="TaskEvent.RetryAt"/>).</summary>
    Retrying,
    /// <summary>The attempt failed for the last time, or permanently.</summary>
    Dead,
    /// <summary>The task was cancelled: waiting, or while it ran.</summary>
    Cancelled,
    /// <summary>It reached its expiry before it started.</summary>
    Expired,
}

/// <summary>
/// A state change of a task, as the process that made it saw it. Raised after the change is stored (an enqueue after the
/// backend acknowledged it, an outcome after its completion was written, as the backend settled it: a retry of a task
/// whose cancel was asked is <see cref="TaskEventKind.Cancelled"/>, and a completion the backend ignored, its lease no
/// longer held, raises none), except <see cref="TaskEventKind.Started"/>, raised as the handler starts.
/// </summary>
public sealed record TaskEvent
{
    /// <summary>The event of an attempt's outcome whose <paramref name="completion"/> was written by worker
    /// <paramref name="workerId"/> (the worker's, or its time-limit watchdog's on its behalf), and that the store settled in
    /// <paramref name="state"/> (<see cref="CompletionOverride.State"/>; null: as asked).</summary>
    internal static TaskEvent OfOutcome(TaskMessage message, Completion completion, string workerId, TimeSpan? duration, TaskState? state = null)
    {
        var (workflowId, stepId) = Workflows.WorkflowHeaders.StepOf(message);
        var settled = state ?? completion.Kind.StateAfter();
        return new TaskEvent
        {
            WorkflowId = workflowId,
            StepId = stepId,
            Kind = state is null ? completion.Kind.EventKind() : CompletionKinds.EventKindOf(settled),
            State = settled,
            TaskId = message.Id,
            Task = message.Task,
            Queue = message.Queue,
            Attempt = completion.Attempt,
            At = completion.At,
            WorkerId = workerId,
            Duration = duration,
            Error = completion.Error,
            // A retry that the store cancelled, or held back in pending, waits for no time.
            RetryAt = settled == TaskState.Retrying ? completion.RetryAt : null,
            Origin = workerId,
        };
    }

    /// <summary>What happened.</summary>
    public required TaskEventKind Kind { get; init; }
    /// <summary>The state the task is in after it.</summary>
    public required TaskState State { get; init; }
    /// <summary>Task id.</summary>
    public required Guid TaskId { get; init; }
    /// <summary>Task name.</summary>
    public required string Task { get; init; }
    /// <summary>Queue name.</summary>
    public required string Queue { get; init; }
    /// <summary>The attempt it concerns (1-based); 0 for an enqueue.</summary>
    public int Attempt { get; init; }
    /// <summary>When it happened.</summary>
    public required DateTimeOffset At { get; init; }
    /// <summary>The worker that ran the attempt, for attempt events.</summary>
    public string? WorkerId { get; init; }
    /// <summary>How long the attempt ran, for outcomes of attempts that ran.</summary>
    public TimeSpan? Duration { get; init; }
    /// <summary>For <see cref="TaskEventKind.Started"/>: how long the task waited between being ready (enqueued, or due at
    /// its ETA or retry time) and its handler's start.</summary>
    public TimeSpan? QueueWait { get; init; }
    /// <summary>The error of a failed attempt.</summary>
    public TaskError? Error { get; init; }
    /// <summary>When a retrying task runs again.</summary>
    public DateTimeOffset? RetryAt { get; init; }
    /// <summary>The process that raised it (its <see cref="WorkerStatus.WorkerId"/>).</summary>
    public string? Origin { get; init; }
    /// <summary>For a workflow step's task: its workflow (events of a worker's attempts and of a cancel or retry by hand;
    /// a bulk retry does not say).</summary>
    public Guid? WorkflowId { get; init; }
    /// <summary>For a workflow step's task: its step id, with <see cref="WorkflowId"/>.</summary>
    public string? StepId { get; init; }

    /// <summary>Whether an attempt failed (<see cref="TaskEventKind.Retrying"/> or <see cref="TaskEventKind.Dead"/>):
    /// Celery's <c>task_failure</c>.</summary>
    public bool IsFailure => Kind is TaskEventKind.Retrying or TaskEventKind.Dead;
}

/// <summary>Names of event kinds in the HTTP API and the event stream.</summary>
public static class TaskEventKinds
{
    /// <summary>The lower-case name: <c>enqueued</c>, <c>started</c>, <c>succeeded</c>, <c>retrying</c>, <c>dead</c>,
    /// <c>cancelled</c>, <c>expired</c>.</summary>
    public static string ToApiName(this TaskEventKind kind) => kind switch
    {
        TaskEventKind.Enqueued => "enqueued",
        TaskEventKind.Started => "started",
        TaskEventKind.Succeeded => "succeeded",
        TaskEventKind.Retrying => "retrying",
        TaskEventKind.Dead => "dead",
        TaskEventKind.Cancelled => "cancelled",
        TaskEventKind.Expired => "expired",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>Parses a lower-case name; false when unknown.</summary>
    public static bool TryParseApiName(string? name, out TaskEventKind kind)
    {
        foreach (var candidate in Enum.GetValues<TaskEventKind>())
        {
            if (string.Equals(candidate.ToApiName(), name, StringComparison.OrdinalIgnoreCase))
            {
                kind = candidate;
                return true;
            }
        }
        kind = default;
        return false;
    }
}

/// <summary>
/// Observes the task events this process raises, as Celery's signals do (<c>task_success</c>, <c>task_failure</c>).
/// Registered with <see cref="ConveyorBuilder.AddEventObserver{TObserver}"/> (a singleton). Called in line, on the
/// thread that made the change — the worker's, the client's caller's — so it must be quick and must not block: hand slow
/// work to a queue of your own (or enqueue a task). An exception is logged and dropped. Sees this process's events only;
/// <see cref="TaskEventBus.Subscribe"/> with <c>includeRemote</c> sees every process's.
/// </summary>
public interface ITaskEventObserver
{
    /// <summary>Called for each event this process raises.</summary>
    void OnEvent(TaskEvent taskEvent);
}
