namespace Conveyor.Backends;

/// <summary>A queue to fetch from and its weight among the others.</summary>
/// <param name="Name">Queue name.</param>
/// <param name="Weight">Relative share of fetches, ≥ 1. Default 1.</param>
public readonly record struct QueueWeight(string Name, int Weight = 1);

/// <summary>What a worker asks for when it fetches.</summary>
public sealed record FetchRequest
{
    /// <summary>The worker that will hold the leases.</summary>
    public required string WorkerId { get; init; }
    /// <summary>Queues to fetch from, with weights; <see cref="QueueOrder.For"/> gives the order to take them in.</summary>
    public required IReadOnlyList<QueueWeight> Queues { get; init; }
    /// <summary>Most messages to return.</summary>
    public required int MaxCount { get; init; }
    /// <summary>How long a lease lasts unless extended.</summary>
    public required TimeSpan LeaseDuration { get; init; }
    /// <summary>When true, queues are tried in the order given (strict priority) instead of by weight.</summary>
    public bool StrictOrder { get; init; }
}

/// <summary>A message delivered under a lease.</summary>
/// <param name="Message">The message.</param>
/// <param name="Token">Fencing token of this delivery; later operations name it, so a lease lost to the reaper cannot complete the task.</param>
/// <param name="Attempt">This delivery's attempt number, 1-based.</param>
/// <param name="IsRedelivery">True when an earlier attempt started and was interrupted (its lease ran out, or was
/// abandoned or handed back, after its handler started).</param>
/// <param name="ExpiresAt">When the lease runs out unless extended.</param>
public sealed record Lease(TaskMessage Message, long Token, int Attempt, bool IsRedelivery, DateTimeOffset ExpiresAt)
{
    /// <summary>True when an earlier lease of this task ended without a settled outcome (ran out, or was abandoned),
    /// started or not. The worker then records the start (<see cref="IQueueBackend.StartAsync"/>) before the handler runs,
    /// instead of beside it: a task that kills its worker at once is counted as interrupted from its second delivery on,
    /// and reaches <see cref="LeaseRules.MaxInterruptions"/> instead of coming back forever.</summary>
    public bool RecordStartFirst { get; init; }

    /// <summary>The reference that names this lease in later calls.</summary>
    public LeaseRef Ref => new(Message.Id, Token);
}

/// <summary>Names a lease: the task and the delivery's token.</summary>
/// <param name="TaskId">Task id.</param>
/// <param name="Token">Fencing token from <see cref="Lease.Token"/>.</param>
public readonly record struct LeaseRef(Guid TaskId, long Token);

/// <summary>How an attempt ended.</summary>
public enum CompletionKind
{
    /// <summary>Handler returned.</summary>
    Succeeded,
    /// <summary>Handler failed; run again at <see cref="Completion.RetryAt"/>.</summary>
    Retry,
    /// <summary>Handler failed for the last time, or permanently.</summary>
    Dead,
    /// <summary>Cancelled while running.</summary>
    Cancelled,
    /// <summary>Delivered after its expiry; not run.</summary>
    Expired,
}

/// <summary>What each <see cref="CompletionKind"/> means for a task: written once, used by every backend, the worker's
/// events and the inline runner.</summary>
public static class CompletionKinds
{
    /// <summary>The state a completion of this kind leaves its task in (a retry of a task whose cancel was asked is the
    /// backend's to turn into <see cref="TaskState.Cancelled"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A kind this build does not know.</exception>
    public static TaskState StateAfter(this CompletionKind kind) => kind switch
    {
        CompletionKind.Succeeded => TaskState.Succeeded,
        CompletionKind.Retry => TaskState.Retrying,
        CompletionKind.Dead => TaskState.Dead,
        CompletionKind.Cancelled => TaskState.Cancelled,
        CompletionKind.Expired => TaskState.Expired,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown completion kind"),
    };

    /// <summary>The task event a completion of this kind raises.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A kind this build does not know.</exception>
    public static TaskEventKind EventKind(this CompletionKind kind) => kind switch
    {
        CompletionKind.Succeeded => TaskEventKind.Succeeded,
        CompletionKind.Retry => TaskEventKind.Retrying,
        CompletionKind.Dead => TaskEventKind.Dead,
        CompletionKind.Cancelled => TaskEventKind.Cancelled,
        CompletionKind.Expired => TaskEventKind.Expired,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown completion kind"),
    };

    /// <summary>The task event of a completion that the store settled in <paramref name="state"/>
    /// (<see cref="CompletionOverride.State"/>, or its kind's <see cref="StateAfter"/>): a retry that the store cancelled
    /// raises <see cref="TaskEventKind.Cancelled"/>; a step's retry that its workflow holds back in
    /// <see cref="TaskState.Pending"/> still raises <see cref="TaskEventKind.Retrying"/> (its attempt failed and it runs
    /// again, once the steps that hold it back end).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A state no completion leaves a task in.</exception>
    public static TaskEventKind EventKindOf(TaskState state) => state switch
    {
        TaskState.Succeeded => TaskEventKind.Succeeded,
        TaskState.Retrying or TaskState.Pending => TaskEventKind.Retrying,
        TaskState.Dead => TaskEventKind.Dead,
        TaskState.Cancelled => TaskEventKind.Cancelled,
        TaskState.Expired => TaskEventKind.Expired,
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "no completion leaves a task in this state"),
    };
}

/// <summary>The outcome of one attempt, reported to the backend (usually in batches).</summary>
public sealed record Completion
{
    /// <summary>The lease this outcome settles.</summary>
    public required LeaseRef Lease { get; init; }
    /// <summary>The outcome.</summary>
    public required CompletionKind Kind { get; init; }
    /// <summary>The attempt number that ended.</summary>
    public int Attempt { get; init; }
    /// <summary>Result JSON for <see cref="CompletionKind.Succeeded"/>.</summary>
    public string? Result { get; init; }
    /// <summary>Error for failures.</summary>
    public TaskError? Error { get; init; }
    /// <summary>Next attempt time for <see cref="CompletionKind.Retry"/>.</summary>
    public DateTimeOffset? RetryAt { get; init; }
    /// <summary>When the attempt ended.</summary>
    public required DateTimeOffset At { get; init; }
    /// <summary>Its handler never started (the worker has no handler for the task): a <see cref="CompletionKind.Retry"/>
    /// does not spend the attempt. False by default: a completion settles an attempt that ran.</summary>
    public bool Unstarted { get; init; }
    /// <summary>For a <see cref="CompletionKind.Retry"/>: the task's headers from now on, as stored
    /// (<see cref="RetryHeaders.ToStored"/>: with the reserved headers of its retry policy), delivered with its next lease
    /// (the limits stage marks a start time it reserved this way); null keeps them. Ignored for other kinds.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }
    /// <summary>A hint: the task is a step of a workflow (its message carries <see cref="Workflows.WorkflowHeaders.Workflow"/>).
    /// A backend may pick its statement by it (SQLite completes a step's success without first trying a plain task's
    /// statement); it must stay correct without it.</summary>
    public bool WorkflowStep { get; init; }
}

/// <summary>A completion that the store did not settle as asked (<see cref="IQueueBackend.CompleteAsync"/> returns them): it
/// changed nothing, or it left its task in another state than its kind's (<see cref="CompletionKinds.StateAfter"/>). The
/// worker raises the event of what the store did, not of what it asked.</summary>
/// <param name="Lease">The completion's lease.</param>
/// <param name="State">The state the completion left its task in: <see cref="TaskState.Cancelled"/> for a
/// <see cref="CompletionKind.Retry"/> of a task whose cancel was asked, <see cref="TaskState.Pending"/> for a retry of a
/// workflow step that the retried steps of its workflow hold back (docs/workflows.md, Retry). Null when it changed
/// nothing: its lease was no longer held (it ran out and was taken back, possibly leased again, or the task was settled
/// otherwise).</param>
public readonly record struct CompletionOverride(LeaseRef Lease, TaskState? State)
{
    /// <summary>Every completion was settled as asked: the answer of nearly every batch, shared (no allocation).</summary>
    public static IReadOnlyList<CompletionOverride> None { get; } = [];

    /// <summary>A completion that changed nothing: its lease was no longer held.</summary>
    public static CompletionOverride Ignored(LeaseRef lease) => new(lease, null);

    /// <summary>Whether the completion changed nothing (<see cref="State"/> is null).</summary>
    public bool IsIgnored => State is null;
}

/// <summary>A task that the end of its lease (run out, abandoned or handed back) settled for good: <see cref="TaskState.Dead"/>
/// (its last interrupted attempt, <see cref="LeaseRules"/>) or <see cref="TaskState.Cancelled"/> (its cancel was asked, or
/// it was a step held back whose workflow ended with it: docs/workflows.md, Retry).</summary>
/// <param name="TaskId">The task.</param>
/// <param name="State">Its state now: dead or cancelled.</param>
public readonly record struct EndedLease(Guid TaskId, TaskState State);

/// <summary>What a sweep of leases did (<see cref="IQueueBackend.RequeueExpiredLeasesAsync"/>,
/// <see cref="IQueueBackend.AbandonLeasesAsync"/>), or a hand-back by id (<see cref="IQueueBackend.ReleaseAsync"/>): how
/// many leases ended, and the tasks among them that ended for good, whose events the caller raises (no worker raises them:
/// docs/workflows.md#workflow-events).</summary>
/// <param name="Count">How many leases ended.</param>
/// <param name="Ended">The tasks that ended dead or cancelled, in no particular order.</param>
public sealed record LeaseSweep(int Count, IReadOnlyList<EndedLease> Ended)
{
    /// <summary>No lease ended.</summary>
    public static LeaseSweep None { get; } = new(0, []);
}

/// <summary>The answer to a lease extension.</summary>
/// <param name="CancelRequested">Tasks whose cancellation was asked: the worker cancels their handlers.</param>
/// <param name="Lost">Leases no longer held (expired and taken by the reaper, or the task was settled elsewhere).</param>
public sealed record LeaseExtension(IReadOnlyList<Guid> CancelRequested, IReadOnlyList<LeaseRef> Lost)
{
    /// <summary>Nothing to report.</summary>
    public static LeaseExtension None { get; } = new([], []);
}

/// <summary>
/// What happens to a lease that ends without an outcome (it ran out, or was abandoned or handed back), written once
/// for every backend and checked by the conformance suite.
/// </summary>
/// <remarks>
/// An attempt is spent when its handler starts (<see cref="IQueueBackend.StartAsync"/>), not when it is fetched: a
/// worker holds up to its prefetch of leases that have not started, and a crash must not spend (or dead-letter) tasks
/// that never ran. A lease that ends unstarted makes its task ready again with its attempt unspent, as often as it
/// happens. A lease that ends after its handler started is an interrupted attempt: the attempt counts, an error
/// (<see cref="InterruptedErrorType"/>) is recorded for it, and the task is redelivered (<see cref="Lease.IsRedelivery"/>)
/// whatever its <see cref="TaskMessage.MaxAttempts"/> (which bounds failures its handler reports) until
/// <see cref="MaxInterruptions"/> interrupted attempts make it dead: a task that kills its worker every time is not
/// redelivered forever (Sidekiq's super_fetch makes the same call with the same bound). A lease whose task's
/// cancellation was asked ends the task as cancelled.
/// </remarks>
public static class LeaseRules
{
    /// <summary>Interrupted attempts after which a task is dead: 3.</summary>
    public const int MaxInterruptions = 3;

    /// <summary>The error type recorded for an interrupted attempt.</summary>
    public const string InterruptedErrorType = "Conveyor.LeaseExpired";

    /// <summary>The error recorded for an interrupted attempt.</summary>
    public static TaskError InterruptedError { get; } = new(InterruptedErrorType,
        "The lease of this attempt ended while its handler ran: its worker stopped heartbeating (it crashed, was killed, was stopped past its grace, or lost the backend).");
}
