namespace Conveyor.Backends;

/// <summary>
/// The queue role: delivers messages under leases, at least once. Every call may batch many
/// messages; implementations keep each call to as few round trips as the engine allows
/// (docs/architecture.md lists them per backend).
/// </summary>
/// <remarks>
/// Guarantees every implementation gives, checked by the conformance suite:
/// a message acknowledged by <see cref="EnqueueAsync"/> is durable; a message is held by at most one
/// unexpired lease; within one queue and priority, messages are fetched in enqueue order;
/// a completion naming a lease that is no longer held changes nothing.
/// </remarks>
public interface IQueueBackend
{
    /// <summary>Stores messages, all or none, and returns one result per message in order.
    /// A message whose idempotency key exists returns the existing task.</summary>
    Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken);

    /// <summary>Leases up to <see cref="FetchRequest.MaxCount"/> ready messages from unpaused queues,
    /// highest priority first, FIFO within a priority. Never waits: it returns what is ready now, possibly nothing.
    /// Workers wait on the notifier's <see cref="NotifierChannels.Ready"/> notifications instead, which every operation
    /// that makes work ready publishes.</summary>
    Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken);

    /// <summary>Records that the handlers of these leases start now: from here on, a lease that runs out or is abandoned
    /// spends its attempt (<see cref="LeaseRules"/>). A lease whose handler never started comes back without spending one.
    /// Returns the leases no longer held (run out and taken back, or settled elsewhere): their handlers must not run.</summary>
    Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken);

    /// <summary>Settles attempts: success with a result, retry at a time, dead letter, cancelled or expired.
    /// Completions whose lease is no longer held are ignored. Returns the completions not settled as asked, in no
    /// particular order: those ignored, and those that left their task in another state than their kind's (a retry of a
    /// task whose cancel was asked is cancelled; a workflow step's retry held back by its workflow goes back to pending).
    /// When every completion was settled as asked (nearly always) it returns <see cref="CompletionOverride.None"/>.</summary>
    Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken);

    /// <summary>Extends held leases to now + <paramref name="duration"/> and reports cancel requests and lost leases.</summary>
    Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken);

    /// <summary>Hands back leases at once. One whose handler never started (<see cref="StartAsync"/>) becomes ready again
    /// without spending an attempt and keeps its place in its queue; one that started is settled as an interrupted
    /// attempt (<see cref="LeaseRules"/>), as if its lease had run out. Returns how many leases ended, and the tasks that
    /// ended dead or cancelled by it (their events are the caller's to raise), as a sweep does.</summary>
    Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken);

    /// <summary>Settles every lease whose time ran out by <see cref="LeaseRules"/>: unstarted ones become ready again
    /// without spending an attempt (never dead); started ones are interrupted attempts. Returns how many leases ended, and
    /// the tasks that ended dead or cancelled by it (their events are the caller's to raise).</summary>
    Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken);

    /// <summary>Ends every lease that <paramref name="workerId"/> holds now, as if each had run out
    /// (<see cref="LeaseRules"/>): for a worker known to be gone (its supervisor saw the process exit), so that its tasks
    /// come back at once instead of after a lease. Returns how many leases ended, and the tasks that ended dead or cancelled
    /// by it.</summary>
    Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken);

    /// <summary>Makes scheduled and retrying messages whose time has come ready. Returns how many.</summary>
    Task<int> PromoteDueAsync(CancellationToken cancellationToken);

    /// <summary>The earliest not-before time among scheduled and retrying messages, or null when none,
    /// so that the scheduler can sleep until then.</summary>
    Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken);

    /// <summary>Cancels a waiting task, or asks its worker to cancel a running one.</summary>
    Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken);

    /// <summary>Queues a dead, cancelled or expired task again with a fresh set of attempts.</summary>
    Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken);

    /// <summary>Stops fetches from a queue; enqueues still succeed.</summary>
    Task PauseQueueAsync(string queue, CancellationToken cancellationToken);

    /// <summary>Lets fetches from a queue go on.</summary>
    Task ResumeQueueAsync(string queue, CancellationToken cancellationToken);
}
