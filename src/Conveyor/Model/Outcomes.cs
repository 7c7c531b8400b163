namespace Conveyor;

/// <summary>The answer to an enqueue of one message.</summary>
/// <param name="Id">The task's id: the new one, or the existing task's when the idempotency key matched.</param>
/// <param name="Created">False when an existing task was returned for the idempotency key.</param>
/// <param name="State">The task's state after the call.</param>
public readonly record struct EnqueueResult(Guid Id, bool Created, TaskState State)
{
    /// <summary>The message as stored, when this call created the task (set by <see cref="ITaskClient"/>; backends leave it null).</summary>
    public TaskMessage? Message { get; init; }

    /// <summary>True when nothing was created because a live task holds the message's <see cref="TaskMessage.UniqueKey"/>:
    /// <see cref="Id"/> is that task's.</summary>
    public bool MatchedUniqueKey { get; init; }
}

/// <summary>What a cancel did.</summary>
public enum CancelOutcome
{
    /// <summary>No such task.</summary>
    NotFound,
    /// <summary>It was waiting; now <see cref="TaskState.Cancelled"/>.</summary>
    Cancelled,
    /// <summary>It is running; its worker will cancel it at its next heartbeat.</summary>
    Requested,
    /// <summary>It had already finished; nothing changed.</summary>
    AlreadyFinished,
}

/// <summary>What a manual retry did.</summary>
public enum RetryOutcome
{
    /// <summary>No such task.</summary>
    NotFound,
    /// <summary>Queued again with a fresh set of attempts.</summary>
    Requeued,
    /// <summary>Not in a state that can be retried (only dead, cancelled and expired can).</summary>
    NotRetryable,
    /// <summary>A step of a workflow: it is retried with its workflow (<c>IWorkflowClient.RetryAsync</c>), which counts its
    /// new end toward the steps that wait for it once; retried alone, its second end would count twice.</summary>
    WorkflowStep,
}
