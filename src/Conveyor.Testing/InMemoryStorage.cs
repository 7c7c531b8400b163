using Conveyor.Backends;
using Conveyor.Workflows;

namespace Conveyor.Testing;

/// <summary>
/// What one database would hold for <see cref="InMemoryBackend"/>: tasks, queues, workers, leaderships and the
/// notifier. Instances of the backend built over the same storage see one another's tasks and notifications, as
/// processes sharing a database would (the conformance suite's peers). Nothing here outlives the process.
/// </summary>
/// <remarks>Every member is read and changed under <see cref="Gate"/>: one lock, so that each backend call is one
/// atomic step of the state machine, as one transaction is on a SQL backend.</remarks>
public sealed class InMemoryStorage
{
    internal Lock Gate { get; } = new();

    /// <summary>Every task by id.</summary>
    internal Dictionary<Guid, StoredTask> Tasks { get; } = [];

    /// <summary>Every task in enqueue order (ascending <see cref="StoredTask.Seq"/>): the listing's order, newest last.</summary>
    internal List<StoredTask> BySeq { get; } = [];

    internal Dictionary<string, Guid> IdempotencyKeys { get; } = new(StringComparer.Ordinal);

    /// <summary>Every known queue: enqueued to or paused at least once.</summary>
    internal SortedDictionary<string, QueueState> Queues { get; } = new(StringComparer.Ordinal);

    /// <summary>Scheduled and retrying tasks by not-before time, then enqueue order.</summary>
    internal SortedSet<StoredTask> Due { get; } = new(Comparer<StoredTask>.Create(static (x, y) =>
    {
        var byTime = Nullable.Compare(x.NotBefore, y.NotBefore);
        return byTime != 0 ? byTime : x.Seq.CompareTo(y.Seq);
    }));

    /// <summary>Running tasks: the ones the lease reaper looks at.</summary>
    internal HashSet<StoredTask> Leased { get; } = [];

    internal Dictionary<string, WorkerInfo> Workers { get; } = new(StringComparer.Ordinal);

    internal Dictionary<string, (string Owner, DateTimeOffset ExpiresAt)> Leaders { get; } = new(StringComparer.Ordinal);

    internal SortedDictionary<string, StoredSchedule> Schedules { get; } = new(StringComparer.Ordinal);

    internal Dictionary<string, UniqueClaim> UniqueKeys { get; } = new(StringComparer.Ordinal);

    /// <summary>API keys by id, in creation order (<see cref="IApiKeyStore"/>).</summary>
    internal List<StoredApiKey> ApiKeys { get; } = [];

    /// <summary>Audit entries in append order (<see cref="IAuditLog"/>).</summary>
    internal List<AuditEntry> Audit { get; } = [];

    /// <summary>Users by name (<see cref="IUserStore"/>).</summary>
    internal SortedDictionary<string, StoredUser> Users { get; } = new(StringComparer.Ordinal);

    /// <summary>Each rate limit's next free start time (<see cref="ILimitStore.ReserveRateSlotsAsync"/>), by key.</summary>
    internal Dictionary<string, DateTimeOffset> RateNextFree { get; } = new(StringComparer.Ordinal);

    /// <summary>Each concurrency limit's slots by task, by key; a key with no slot left is removed.</summary>
    internal Dictionary<string, Dictionary<Guid, HeldSlot>> ConcurrencySlots { get; } = new(StringComparer.Ordinal);

    /// <summary>Every instance's notifier: one hub, so that a notification published by one instance reaches the
    /// subscribers of all.</summary>
    internal InProcessNotifier Notifier { get; } = new();

    /// <summary>Every workflow by id (<see cref="IWorkflowStore"/>).</summary>
    internal Dictionary<Guid, StoredWorkflowState> Workflows { get; } = [];

    /// <summary>Every workflow in creation order.</summary>
    internal List<StoredWorkflowState> WorkflowsBySeq { get; } = [];

    /// <summary>The last workflow sequence given (retention deletes workflows: the list's length is not it).</summary>
    internal long LastWorkflowSeq { get; set; }

    /// <summary>Queues where a step was released since <see cref="TakeReleasedQueues"/> last ran.</summary>
    private readonly HashSet<string> _releasedQueues = new(StringComparer.Ordinal);

    private long _lastSeq;
    private long _lastToken;

    internal long NextSeq() => ++_lastSeq;

    /// <summary>A fencing token never handed out before on this storage.</summary>
    internal long NextToken() => ++_lastToken;

    internal QueueState Queue(string name)
    {
        if (!Queues.TryGetValue(name, out var queue))
        {
            queue = new QueueState();
            Queues[name] = queue;
        }
        return queue;
    }

    /// <summary>Moves <paramref name="task"/> to <paramref name="state"/> and records the transition at
    /// <paramref name="at"/>, keeping the ready, due and leased indexes in step. A caller changes
    /// <see cref="StoredTask.NotBefore"/> only while the task is in none of them (the due index is ordered by it).</summary>
    internal void Transition(StoredTask task, TaskState state, DateTimeOffset at)
    {
        switch (task.State)
        {
            case TaskState.Queued:
                Queue(task.Message.Queue).Ready.Remove(task);
                break;
            case TaskState.Scheduled or TaskState.Retrying:
                Due.Remove(task);
                break;
            case TaskState.Running:
                Leased.Remove(task);
                break;
        }
        var wasTerminal = task.State.IsTerminal();
        var wasPending = task.State == TaskState.Pending;
        task.State = state;
        task.Transitions.Add(new TaskTransition(state, at));
        switch (state)
        {
            case TaskState.Queued:
                Queue(task.Message.Queue).Ready.Add(task);
                break;
            case TaskState.Scheduled or TaskState.Retrying:
                Due.Add(task);
                break;
            case TaskState.Running:
                Leased.Add(task);
                break;
        }
        // As the SQL backends' trigger does, in the same atomic step as the change that ended the step.
        if (task.WorkflowId is { } workflowId && state.IsTerminal() && !wasTerminal)
        {
            StepFinished(Workflows[workflowId], task, state, at, wasPending);
        }
    }

    /// <summary>The queues where steps were released since the last call; called under the lock, published after it.</summary>
    internal List<string> TakeReleasedQueues()
    {
        if (_releasedQueues.Count == 0)
        {
            return [];
        }
        var queues = _releasedQueues.ToList();
        _releasedQueues.Clear();
        return queues;
    }

    /// <summary>What a step's end does to its workflow (the contract of <see cref="IWorkflowStore"/>): a success releases
    /// each dependent whose last dependency it was; the first failure queues the error step; a failure under the policy
    /// stop fails the running workflow and cancels its steps that have not started (the error step excepted); the
    /// workflow ends when none of its steps is active (scheduled, queued, running, retrying), its pending steps cancelled.</summary>
    private void StepFinished(StoredWorkflowState workflow, StoredTask step, TaskState state, DateTimeOffset at, bool wasPending)
    {
        if (workflow.State != WorkflowState.Running)
        {
            // Once a stop failed it, its steps' ends still release the steps spared by the stop (released when all ended).
            if (workflow.Stopped)
            {
                Release(workflow, step, state, at);
            }
            return;
        }
        // A step cancelled while pending was not active.
        if (!wasPending)
        {
            workflow.ActiveSteps--;
        }
        workflow.ActiveSteps += Release(workflow, step, state, at);
        if (state != TaskState.Succeeded)
        {
            if (!workflow.Failed && workflow.ErrorTask is { } errorTask && Tasks.TryGetValue(errorTask, out var errorStep) && errorStep.State == TaskState.Pending)
            {
                Transition(errorStep, TaskState.Queued, at);
                _releasedQueues.Add(errorStep.Message.Queue);
                workflow.ActiveSteps++;
            }
            workflow.Failed = true;
            if (step.OnFailure == WorkflowFailurePolicy.Stop)
            {
                // The workflow first: the cancellations below then leave it as it is, but for the steps released when all
                // ended, which they release (Stopped) and which are spared.
                workflow.State = WorkflowState.Failed;
                workflow.FinishedAt = at;
                workflow.Stopped = true;
                CancelUnstarted(workflow, at, except: workflow.ErrorTask, spareAllEnded: true);
                return;
            }
        }
        EndIfIdle(workflow, at);
    }

    /// <summary>A running workflow with no active step left ends; what is still pending can never run (a step it waits
    /// for failed, or it is the error step and none did) and is cancelled.</summary>
    private void EndIfIdle(StoredWorkflowState workflow, DateTimeOffset at)
    {
        if (workflow.ActiveSteps == 0)
        {
            workflow.State = workflow.Failed ? WorkflowState.Failed : WorkflowState.Succeeded;
            workflow.FinishedAt = at;
            CancelUnstarted(workflow, at, except: null);
        }
    }

    /// <summary>Takes a step whose lease ended without an outcome, or whose attempt asked for a retry, back to pending when
    /// steps that its workflow's retry ran again hold it back (the count the retry gave it while it was leased, lowered by
    /// their ends, is above 0) and its workflow would release it: it runs after them, not before. False, and nothing
    /// changed, otherwise. Under the lock.</summary>
    internal bool HoldBack(StoredTask task, DateTimeOffset at)
    {
        if (task.PendingSteps <= 0 || task.WorkflowId is not { } workflowId || !Workflows.TryGetValue(workflowId, out var workflow)
            || !(workflow.State == WorkflowState.Running || (workflow.Stopped && task.RunWhen == WorkflowRunWhen.AllEnded)))
        {
            return false;
        }
        Transition(task, TaskState.Pending, at);
        if (workflow.State == WorkflowState.Running)
        {
            // No longer active; if nothing else is, what holds it back can never end (a failure under continue).
            workflow.ActiveSteps--;
            EndIfIdle(workflow, at);
        }
        return true;
    }

    /// <summary>Releases each pending dependent of <paramref name="step"/> whose count reaches 0: at its success every one, at
    /// another end those released when all ended (<see cref="WorkflowRunWhen.AllEnded"/>). Returns how many.</summary>
    private int Release(StoredWorkflowState workflow, StoredTask step, TaskState state, DateTimeOffset at)
    {
        var released = 0;
        foreach (var dependentId in workflow.Dependents.GetValueOrDefault(step.Message.Id) ?? [])
        {
            // A dependent that retention deleted (it was cancelled when the workflow failed) is passed over.
            // One not pending was counted by a retry while leased (HoldBack): its count falls, and it runs on (or, once the
            // count is 0, waits for its own retry); only a pending one is queued. Any other's count is 0.
            if (Tasks.TryGetValue(dependentId, out var dependent)
                && (dependent.State == TaskState.Pending || (!dependent.State.IsTerminal() && dependent.PendingSteps > 0))
                && (state == TaskState.Succeeded || dependent.RunWhen == WorkflowRunWhen.AllEnded) && --dependent.PendingSteps == 0
                && dependent.State == TaskState.Pending)
            {
                Transition(dependent, TaskState.Queued, at);
                _releasedQueues.Add(dependent.Message.Queue);
                released++;
            }
        }
        return released;
    }

    /// <summary>Cancels the steps of <paramref name="workflow"/> that have not started (pending, scheduled, queued,
    /// retrying), but <paramref name="except"/> and, when <paramref name="spareAllEnded"/>, those released when all ended.</summary>
    internal void CancelUnstarted(StoredWorkflowState workflow, DateTimeOffset at, Guid? except, bool spareAllEnded = false)
    {
        foreach (var info in workflow.Steps)
        {
            if (info.TaskId != except && !(spareAllEnded && info.RunWhen == WorkflowRunWhen.AllEnded)
                && Tasks.TryGetValue(info.TaskId, out var task) && task.State is TaskState.Pending or TaskState.Scheduled or TaskState.Queued or TaskState.Retrying)
            {
                task.FinishedAt = at;
                Transition(task, TaskState.Cancelled, at);
            }
        }
    }

    /// <summary>Tells subscribers of every instance that work is ready in each of <paramref name="queues"/>. Called
    /// after the lock is released: subscribers run on the caller's thread.</summary>
    internal void PublishReady(IEnumerable<string> queues)
    {
        foreach (var queue in queues)
        {
            Notifier.Hub.Deliver(new Notification(NotifierChannels.Ready, queue));
        }
    }
}

/// <summary>A known queue: whether it is paused, and its ready tasks in fetch order.</summary>
internal sealed class QueueState
{
    public bool Paused { get; set; }

    /// <summary>Queued tasks, higher priority first, then enqueue order: a released or promoted task keeps its place.</summary>
    public SortedSet<StoredTask> Ready { get; } = new(Comparer<StoredTask>.Create(static (x, y) =>
    {
        var byPriority = y.Message.Priority.CompareTo(x.Message.Priority);
        return byPriority != 0 ? byPriority : x.Seq.CompareTo(y.Seq);
    }));
}

/// <summary>One task as stored: the message it was enqueued with and everything that happened to it since.</summary>
internal sealed class StoredTask(long seq, TaskMessage message, TaskState state)
{
    public long Seq { get; } = seq;
    /// <summary>The message as enqueued; only its headers change afterwards (<see cref="Conveyor.Backends.Completion.Headers"/>).</summary>
    public TaskMessage Message { get; set; } = message;
    public TaskState State { get; set; } = state;
    /// <summary>Attempts started and not handed back.</summary>
    public int Attempt { get; set; }
    public string? Result { get; set; }
    public TaskError? Error { get; set; }
    public List<AttemptError> Errors { get; } = [];
    public List<TaskTransition> Transitions { get; } = [];
    public DateTimeOffset? NotBefore { get; set; } = message.NotBefore;
    public DateTimeOffset? ExpiresAt { get; set; } = message.ExpiresAt;
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    /// <summary>The worker of the last attempt: set by a fetch, kept once the attempt ends, cleared when the task goes
    /// back to the queue without an outcome (handed back, or its lease ran out).</summary>
    public string? WorkerId { get; set; }
    /// <summary>Fencing token of the current lease; 0 when none is held.</summary>
    public long LeaseToken { get; set; }
    public DateTimeOffset LeaseExpiresAt { get; set; }
    public bool Redelivered { get; set; }
    public bool CancelRequested { get; set; }
    /// <summary>Whether the current lease's handler started (<see cref="Conveyor.Backends.IQueueBackend.StartAsync"/>).</summary>
    public bool LeaseStarted { get; set; }
    /// <summary>Leases of this task that ended without an outcome, started or not.</summary>
    public int Lapses { get; set; }
    /// <summary>Attempts interrupted after their handler started (<see cref="Conveyor.Backends.LeaseRules"/>).</summary>
    public int Interruptions { get; set; }
    /// <summary>The workflow of a step's task; null for a plain task.</summary>
    public Guid? WorkflowId { get; init; }
    /// <summary>For a <see cref="TaskState.Pending"/> step: how many of the steps it runs after have not succeeded (ended,
    /// for one released when all ended). For a running step counted by its workflow's retry, the same, so that a lease
    /// that ends without an outcome takes it back to pending while it is above 0.</summary>
    public int PendingSteps { get; set; }
    /// <summary>For a step: what its failure does to its workflow.</summary>
    public WorkflowFailurePolicy OnFailure { get; init; }
    /// <summary>For a step: when it is released.</summary>
    public WorkflowRunWhen RunWhen { get; init; }

    public TaskRecord ToRecord() => new()
    {
        Id = Message.Id,
        Task = Message.Task,
        Queue = Message.Queue,
        State = State,
        Priority = Message.Priority,
        Args = Message.Args,
        Result = Result,
        Error = Error,
        Attempts = Attempt,
        MaxAttempts = Message.MaxAttempts,
        Retry = Message.Retry,
        CreatedAt = Message.CreatedAt,
        NotBefore = NotBefore,
        ExpiresAt = ExpiresAt,
        StartedAt = StartedAt,
        FinishedAt = FinishedAt,
        IdempotencyKey = Message.IdempotencyKey,
        Headers = Message.Headers,
        WorkerId = WorkerId,
        CancelRequested = CancelRequested,
        // Copies: a record is a snapshot, and the lists go on changing under the lock.
        Transitions = [.. Transitions],
        Errors = [.. Errors],
    };

    /// <summary>The message as a worker gets it: its current not-before and expiry (a manual retry clears both).</summary>
    public TaskMessage CurrentMessage() =>
        NotBefore == Message.NotBefore && ExpiresAt == Message.ExpiresAt ? Message : Message with { NotBefore = NotBefore, ExpiresAt = ExpiresAt };
}

/// <summary>A workflow as stored.</summary>
internal sealed class StoredWorkflowState(long seq, Guid id, string? name, DateTimeOffset createdAt, IReadOnlyList<WorkflowStepInfo> steps)
{
    public long Seq { get; } = seq;
    public Guid Id { get; } = id;
    public string? Name { get; } = name;
    public DateTimeOffset CreatedAt { get; } = createdAt;
    public IReadOnlyList<WorkflowStepInfo> Steps { get; } = steps;
    public WorkflowState State { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    /// <summary>Steps scheduled, queued, running or retrying: the workflow ends when none is left.</summary>
    public int ActiveSteps { get; set; }
    /// <summary>Whether a step failed.</summary>
    public bool Failed { get; set; }
    /// <summary>Whether a failure under the policy stop failed it: the ends of its steps still release the steps released
    /// when all ended, which the stop spared.</summary>
    public bool Stopped { get; set; }
    /// <summary>The error step's task, or null.</summary>
    public Guid? ErrorTask { get; } = steps.FirstOrDefault(s => s.IsErrorStep)?.TaskId;
    /// <summary>For each step's task id, the task ids of the steps that run after it.</summary>
    public Dictionary<Guid, List<Guid>> Dependents { get; } = [];

    public StoredWorkflow ToStored() => new()
    {
        Id = Id,
        Name = Name,
        State = State,
        CreatedAt = CreatedAt,
        FinishedAt = FinishedAt,
        Steps = Steps,
    };
}

/// <summary>A concurrency slot as stored: who holds it, under which lease, until when.</summary>
internal readonly record struct HeldSlot(string Owner, long Token, DateTimeOffset ExpiresAt);
