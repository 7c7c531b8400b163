using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend
{
    // The answer of a batch settled as asked, shared.
    private static readonly Task<IReadOnlyList<CompletionOverride>> NothingOverridden = Task.FromResult(CompletionOverride.None);

    /// <inheritdoc />
    public Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        cancellationToken.ThrowIfCancellationRequested();
        var results = new EnqueueResult[messages.Count];
        var ready = new HashSet<string>(StringComparer.Ordinal);
        lock (_storage.Gate)
        {
            // All or none: every check runs before anything is stored.
            var ids = new HashSet<Guid>();
            foreach (var message in messages)
            {
                ArgumentNullException.ThrowIfNull(message, nameof(messages));
                if (!ids.Add(message.Id) || _storage.Tasks.ContainsKey(message.Id))
                {
                    // In the returned task, as a backend that does I/O fails: callers that start many enqueues at once
                    // see the failure where they await it.
                    return Task.FromException<IReadOnlyList<EnqueueResult>>(new InvalidOperationException(
                        $"A task with id {message.Id} exists already, or is twice in the batch; nothing of the batch was stored."));
                }
            }
            var now = Now();
            for (var i = 0; i < messages.Count; i++)
            {
                var message = messages[i];
                if (message.IdempotencyKey is { } key && _storage.IdempotencyKeys.TryGetValue(key, out var existingId))
                {
                    results[i] = new EnqueueResult(existingId, false, _storage.Tasks[existingId].State);
                    continue;
                }
                var state = message.InitialState(now);
                var task = new StoredTask(_storage.NextSeq(), message, state);
                task.Transitions.Add(new TaskTransition(state, now));
                _storage.Tasks.Add(message.Id, task);
                _storage.BySeq.Add(task);
                if (message.IdempotencyKey is { } newKey)
                {
                    _storage.IdempotencyKeys.Add(newKey, message.Id);
                }
                var queue = _storage.Queue(message.Queue);
                if (state == TaskState.Queued)
                {
                    queue.Ready.Add(task);
                    ready.Add(message.Queue);
                }
                else
                {
                    _storage.Due.Add(task);
                }
                results[i] = new EnqueueResult(message.Id, true, state);
            }
        }
        _storage.PublishReady(ready);
        return Task.FromResult<IReadOnlyList<EnqueueResult>>(results);
    }

    /// <summary>Leases ready messages at once; never waits for work (workers wait on the notifier).</summary>
    public async Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        // Returns to the caller first, as any other backend's fetch does for its round trip: otherwise a consumer that
        // fetches and completes in a loop never yields its thread, and drains the queue before other consumers start.
        await Task.Yield();
        cancellationToken.ThrowIfCancellationRequested();
        var leases = new List<Lease>();
        lock (_storage.Gate)
        {
            var now = Now();
            foreach (var weight in QueueOrder.For(request))
            {
                if (leases.Count >= request.MaxCount)
                {
                    break;
                }
                if (!_storage.Queues.TryGetValue(weight.Name, out var queue) || queue.Paused)
                {
                    continue;
                }
                while (leases.Count < request.MaxCount && queue.Ready.Count > 0)
                {
                    leases.Add(Lease(queue.Ready.Min!, request.WorkerId, request.LeaseDuration, now));
                }
            }
        }
        return leases;
    }

    /// <summary>Leases one queued task to <paramref name="workerId"/>. Under the lock.</summary>
    private Lease Lease(StoredTask task, string workerId, TimeSpan duration, DateTimeOffset now)
    {
        task.Attempt++;
        task.WorkerId = workerId;
        task.LeaseToken = _storage.NextToken();
        task.LeaseExpiresAt = now + duration;
        task.StartedAt = now;
        task.LeaseStarted = false;
        _storage.Transition(task, TaskState.Running, now);
        return new Lease(task.CurrentMessage(), task.LeaseToken, task.Attempt, task.Redelivered, task.LeaseExpiresAt)
        {
            RecordStartFirst = task.Lapses > 0,
        };
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        var lost = new List<LeaseRef>();
        lock (_storage.Gate)
        {
            foreach (var lease in leases)
            {
                if (Held(lease) is { } task)
                {
                    task.LeaseStarted = true;
                }
                else
                {
                    lost.Add(lease);
                }
            }
        }
        return Task.FromResult<IReadOnlyList<LeaseRef>>(lost);
    }

    /// <summary>Ends a held lease without an outcome, by <see cref="LeaseRules"/>; true when its task is ready again. Under the lock.</summary>
    private bool EndLease(StoredTask task, DateTimeOffset now)
    {
        task.LeaseToken = 0;
        if (task.CancelRequested)
        {
            // Its cancel was asked: the lease ends the task as cancelled, with no error of its own.
            task.FinishedAt = now;
            _storage.Transition(task, TaskState.Cancelled, now);
            return false;
        }
        task.Lapses++;
        if (!task.LeaseStarted)
        {
            // It never started: the attempt is not spent, and it keeps its place in the queue (its sequence).
            task.Attempt--;
            task.WorkerId = null;
            return Requeue(task, now);
        }
        // Every attempt interrupted this way is recorded as failed, like one that threw.
        task.Interruptions++;
        task.Error = LeaseRules.InterruptedError;
        task.Errors.Add(new AttemptError(task.Attempt, now, LeaseRules.InterruptedError));
        if (task.Interruptions >= LeaseRules.MaxInterruptions)
        {
            // A task that kills its worker every time is not redelivered forever.
            task.FinishedAt = now;
            _storage.Transition(task, TaskState.Dead, now);
            return false;
        }
        task.Redelivered = true;
        task.WorkerId = null;
        return Requeue(task, now);
    }

    /// <summary>Queues a task whose lease ended without an outcome, unless it is a step that steps its workflow's retry ran
    /// again still hold back: it then waits for them in pending. True when it is ready. Under the lock.</summary>
    private bool Requeue(StoredTask task, DateTimeOffset now)
    {
        if (_storage.HoldBack(task, now))
        {
            return false;
        }
        _storage.Transition(task, TaskState.Queued, now);
        return true;
    }

    /// <summary>The task named by <paramref name="lease"/> while that lease is its current one; null otherwise. Under the lock.</summary>
    private StoredTask? Held(LeaseRef lease) =>
        _storage.Tasks.TryGetValue(lease.TaskId, out var task) && task.State == TaskState.Running && task.LeaseToken == lease.Token ? task : null;

    /// <inheritdoc />
    public Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(completions);
        List<CompletionOverride>? overrides = null;
        lock (_storage.Gate)
        {
            foreach (var completion in completions)
            {
                if (Held(completion.Lease) is not { } task)
                {
                    (overrides ??= []).Add(CompletionOverride.Ignored(completion.Lease));
                    continue;
                }
                // A cancel asked before the worker heard of it must not be lost to a retry.
                var state = completion.Kind == CompletionKind.Retry && task.CancelRequested ? TaskState.Cancelled : completion.Kind.StateAfter();
                if (state != completion.Kind.StateAfter())
                {
                    (overrides ??= []).Add(new CompletionOverride(completion.Lease, state));
                }
                if (completion.Unstarted && completion.Kind == CompletionKind.Retry)
                {
                    // Its handler never ran: the attempt is not spent.
                    task.Attempt--;
                }
                if (state == TaskState.Retrying && completion.Headers is { } headers)
                {
                    // Given as stored: the reserved headers of the retry policy are the message's Retry here.
                    var own = RetryHeaders.FromStored(task.Message.Retry, headers).Headers;
                    task.Message = task.Message with { Headers = own is null || own.Count == 0 ? null : new Dictionary<string, string>(own, StringComparer.Ordinal) };
                }
                task.Result = completion.Result;
                if (completion.Error is { } error)
                {
                    task.Error = error;
                    task.Errors.Add(new AttemptError(completion.Attempt, completion.At, error));
                }
                // Not in the due index while running: safe to change.
                task.NotBefore = state == TaskState.Retrying ? completion.RetryAt ?? completion.At : null;
                task.FinishedAt = state.IsTerminal() ? completion.At : null;
                task.LeaseToken = 0;
                task.Redelivered = false;
                task.CancelRequested = false;
                if (state == TaskState.Retrying && _storage.HoldBack(task, completion.At))
                {
                    // A step its workflow's retry counted while leased, which the retried steps still hold back: it waits
                    // for them in pending, as at its lease's end, not for its retry's time (dropped).
                    task.NotBefore = null;
                    (overrides ??= []).Add(new CompletionOverride(completion.Lease, TaskState.Pending));
                    continue;
                }
                _storage.Transition(task, state, completion.At);
            }
        }
        _storage.PublishReady(_storage.TakeReleasedQueues());
        return overrides is null ? NothingOverridden : Task.FromResult<IReadOnlyList<CompletionOverride>>(overrides);
    }


    /// <inheritdoc />
    public Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return Task.FromResult(LeaseExtension.None);
        }
        var cancel = new List<Guid>();
        var lost = new List<LeaseRef>();
        lock (_storage.Gate)
        {
            var expiresAt = Now() + duration;
            foreach (var lease in leases)
            {
                if (Held(lease) is not { } task)
                {
                    lost.Add(lease);
                    continue;
                }
                task.LeaseExpiresAt = expiresAt;
                if (task.CancelRequested)
                {
                    cancel.Add(task.Message.Id);
                }
            }
        }
        return Task.FromResult(new LeaseExtension(cancel, lost));
    }

    /// <inheritdoc />
    public Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        var ready = new HashSet<string>(StringComparer.Ordinal);
        var count = 0;
        var ended = new List<EndedLease>();
        lock (_storage.Gate)
        {
            var now = Now();
            foreach (var lease in leases)
            {
                if (Held(lease) is not { } task)
                {
                    continue;
                }
                count++;
                if (!task.LeaseStarted && !task.CancelRequested)
                {
                    // A clean hand-back of a lease that never started: not a lapse.
                    task.Attempt--;
                    task.LeaseToken = 0;
                    task.WorkerId = null;
                    if (Requeue(task, now))
                    {
                        ready.Add(task.Message.Queue);
                    }
                }
                else if (EndLease(task, now))
                {
                    ready.Add(task.Message.Queue);
                }
                // Ended for good: its cancel was asked, its last interruption, or a step held back whose workflow ended
                // with it (cancelled).
                if (task.State.IsTerminal())
                {
                    ended.Add(new EndedLease(task.Message.Id, task.State));
                }
            }
        }
        _storage.PublishReady(ready);
        return Task.FromResult(count == 0 ? LeaseSweep.None : new LeaseSweep(count, ended));
    }

    /// <inheritdoc />
    public Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var ready = new HashSet<string>(StringComparer.Ordinal);
        var count = 0;
        var ended = new List<EndedLease>();
        lock (_storage.Gate)
        {
            var now = Now();
            var expired = _storage.Leased.Where(t => t.LeaseExpiresAt < now).OrderBy(t => t.Seq).ToList();
            foreach (var task in expired)
            {
                count++;
                if (EndLease(task, now))
                {
                    ready.Add(task.Message.Queue);
                }
                else if (task.State.IsTerminal())
                {
                    ended.Add(new EndedLease(task.Message.Id, task.State));
                }
            }
        }
        _storage.PublishReady(ready);
        return Task.FromResult(new LeaseSweep(count, ended));
    }

    /// <inheritdoc />
    public Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        cancellationToken.ThrowIfCancellationRequested();
        var ready = new HashSet<string>(StringComparer.Ordinal);
        var count = 0;
        var ended = new List<EndedLease>();
        lock (_storage.Gate)
        {
            var now = Now();
            var held = _storage.Leased.Where(t => t.WorkerId == workerId).OrderBy(t => t.Seq).ToList();
            foreach (var task in held)
            {
                count++;
                if (EndLease(task, now))
                {
                    ready.Add(task.Message.Queue);
                }
                else if (task.State.IsTerminal())
                {
                    ended.Add(new EndedLease(task.Message.Id, task.State));
                }
            }
        }
        _storage.PublishReady(ready);
        return Task.FromResult(new LeaseSweep(count, ended));
    }

    /// <inheritdoc />
    public Task<int> PromoteDueAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var ready = new HashSet<string>(StringComparer.Ordinal);
        var count = 0;
        lock (_storage.Gate)
        {
            var now = Now();
            while (_storage.Due.Count > 0 && _storage.Due.Min!.NotBefore <= now)
            {
                var task = _storage.Due.Min!;
                _storage.Transition(task, TaskState.Queued, now);
                ready.Add(task.Message.Queue);
                count++;
            }
        }
        _storage.PublishReady(ready);
        return Task.FromResult(count);
    }

    /// <inheritdoc />
    public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Due.Count > 0 ? _storage.Due.Min!.NotBefore : null);
        }
    }

    /// <inheritdoc />
    public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            if (!_storage.Tasks.TryGetValue(taskId, out var task))
            {
                return Task.FromResult(CancelOutcome.NotFound);
            }
            switch (task.State)
            {
                case TaskState.Scheduled or TaskState.Queued or TaskState.Retrying or TaskState.Pending:
                    var now = Now();
                    task.FinishedAt = now;
                    _storage.Transition(task, TaskState.Cancelled, now);
                    return Task.FromResult(CancelOutcome.Cancelled);
                case TaskState.Running:
                    // Its worker hears of it at its next lease extension.
                    task.CancelRequested = true;
                    return Task.FromResult(CancelOutcome.Requested);
                default:
                    return Task.FromResult(CancelOutcome.AlreadyFinished);
            }
        }
    }

    /// <inheritdoc />
    public Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        string queue;
        lock (_storage.Gate)
        {
            if (!_storage.Tasks.TryGetValue(taskId, out var task))
            {
                return Task.FromResult(RetryOutcome.NotFound);
            }
            if (task.State is not (TaskState.Dead or TaskState.Cancelled or TaskState.Expired))
            {
                return Task.FromResult(RetryOutcome.NotRetryable);
            }
            // Ready at once with a fresh set of attempts; its history (transitions, errors) is kept.
            task.Attempt = 0;
            task.FinishedAt = null;
            task.NotBefore = null;
            task.ExpiresAt = null;
            task.CancelRequested = false;
            task.Redelivered = false;
            // A fresh set of attempts: interrupted ones of the earlier run count no more.
            task.Interruptions = 0;
            task.Lapses = 0;
            _storage.Transition(task, TaskState.Queued, Now());
            queue = task.Message.Queue;
        }
        _storage.PublishReady([queue]);
        return Task.FromResult(RetryOutcome.Requeued);
    }

    /// <inheritdoc />
    public Task PauseQueueAsync(string queue, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        lock (_storage.Gate)
        {
            _storage.Queue(queue).Paused = true;
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task ResumeQueueAsync(string queue, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        lock (_storage.Gate)
        {
            _storage.Queue(queue).Paused = false;
        }
        _storage.PublishReady([queue]);
        return Task.CompletedTask;
    }
}
