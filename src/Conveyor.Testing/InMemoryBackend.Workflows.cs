using System.Globalization;
using Conveyor.Backends;
using Conveyor.Workflows;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend : IWorkflowStore
{
    /// <inheritdoc />
    public IWorkflowStore Workflows => this;

    /// <inheritdoc />
    public Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        cancellationToken.ThrowIfCancellationRequested();
        var ready = new HashSet<string>(StringComparer.Ordinal);
        lock (_storage.Gate)
        {
            if (_storage.Workflows.ContainsKey(workflow.Id) || workflow.Steps.Any(s => _storage.Tasks.ContainsKey(s.Message.Id)))
            {
                return Task.FromException(new InvalidOperationException($"Workflow {workflow.Id} or one of its steps' tasks exists already; nothing was stored."));
            }
            var now = Now();
            var stored = new StoredWorkflowState(_storage.LastWorkflowSeq + 1, workflow.Id, workflow.Name, workflow.CreatedAt, workflow.StepInfos());
            foreach (var step in workflow.Steps)
            {
                var message = step.Message;
                var state = step.After.Count == 0 && !step.IsErrorStep ? message.InitialState(now) : TaskState.Pending;
                var task = new StoredTask(_storage.NextSeq(), message, state) { WorkflowId = workflow.Id, PendingSteps = step.After.Count, OnFailure = step.OnFailure, RunWhen = step.RunWhen };
                if (state != TaskState.Pending)
                {
                    stored.ActiveSteps++;
                }
                task.Transitions.Add(new TaskTransition(state, now));
                _storage.Tasks.Add(message.Id, task);
                _storage.BySeq.Add(task);
                var queue = _storage.Queue(message.Queue);
                if (state == TaskState.Queued)
                {
                    queue.Ready.Add(task);
                    ready.Add(message.Queue);
                }
                else if (state == TaskState.Scheduled)
                {
                    _storage.Due.Add(task);
                }
                foreach (var dependency in step.After)
                {
                    if (!stored.Dependents.TryGetValue(dependency, out var dependents))
                    {
                        stored.Dependents[dependency] = dependents = [];
                    }
                    dependents.Add(message.Id);
                }
            }
            _storage.Workflows.Add(workflow.Id, stored);
            _storage.WorkflowsBySeq.Add(stored);
            _storage.LastWorkflowSeq = stored.Seq;
        }
        _storage.PublishReady(ready);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Workflows.TryGetValue(workflowId, out var workflow) ? workflow.ToStored() : null);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            if (!_storage.Workflows.TryGetValue(workflowId, out var workflow))
            {
                return Task.FromResult<IReadOnlyList<TaskRecord>>([]);
            }
            var records = new List<TaskRecord>(workflow.Steps.Count);
            foreach (var step in workflow.Steps)
            {
                if (_storage.Tasks.TryGetValue(step.TaskId, out var task))
                {
                    records.Add(task.ToRecord());
                }
            }
            return Task.FromResult<IReadOnlyList<TaskRecord>>(records);
        }
    }

    /// <inheritdoc />
    public Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        cancellationToken.ThrowIfCancellationRequested();
        var limit = Math.Clamp(query.Limit, 1, 1000);
        var before = long.MaxValue;
        if (query.Cursor is { } cursor && !long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out before))
        {
            throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
        }
        var items = new List<StoredWorkflow>();
        lock (_storage.Gate)
        {
            for (var i = _storage.WorkflowsBySeq.Count - 1; i >= 0; i--)
            {
                var workflow = _storage.WorkflowsBySeq[i];
                if (workflow.Seq >= before
                    || (query.State is { } state && workflow.State != state)
                    || (query.Name is { } name && !string.Equals(workflow.Name, name, StringComparison.Ordinal)))
                {
                    continue;
                }
                if (items.Count == limit)
                {
                    return Task.FromResult(new WorkflowPage(items, _storage.WorkflowsBySeq.First(w => w.Id == items[^1].Id).Seq.ToString(CultureInfo.InvariantCulture)));
                }
                items.Add(workflow.ToStored());
            }
        }
        return Task.FromResult(new WorkflowPage(items, null));
    }

    /// <inheritdoc />
    public Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            if (!_storage.Workflows.TryGetValue(workflowId, out var workflow) || workflow.State != WorkflowState.Running)
            {
                return Task.FromResult(false);
            }
            var now = Now();
            workflow.State = WorkflowState.Cancelled;
            workflow.FinishedAt = now;
            _storage.CancelUnstarted(workflow, now, except: null);
            foreach (var step in workflow.Steps)
            {
                if (_storage.Tasks.TryGetValue(step.TaskId, out var task) && task.State == TaskState.Running)
                {
                    // Its worker hears of it at its next lease extension.
                    task.CancelRequested = true;
                }
            }
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var ready = new HashSet<string>(StringComparer.Ordinal);
        lock (_storage.Gate)
        {
            if (!_storage.Workflows.TryGetValue(workflowId, out var workflow) || workflow.State is not (WorkflowState.Failed or WorkflowState.Cancelled))
            {
                return Task.FromResult(false);
            }
            var now = Now();
            workflow.State = WorkflowState.Running;
            workflow.FinishedAt = null;
            workflow.Failed = false;
            workflow.Stopped = false;
            var taskOf = workflow.Steps.ToDictionary(s => s.Id, s => s.TaskId, StringComparer.Ordinal);
            // First every failed step (and an ended error step) back to pending, with a fresh set of attempts.
            foreach (var info in workflow.Steps)
            {
                if (_storage.Tasks.TryGetValue(info.TaskId, out var task)
                    && (task.State is TaskState.Dead or TaskState.Cancelled or TaskState.Expired || (info.IsErrorStep && task.State == TaskState.Succeeded)))
                {
                    task.Attempt = 0;
                    task.FinishedAt = null;
                    task.NotBefore = null;
                    task.ExpiresAt = null;
                    task.CancelRequested = false;
                    task.Redelivered = false;
                    task.Interruptions = 0;
                    task.Lapses = 0;
                    task.PendingSteps = 0;
                    _storage.Transition(task, TaskState.Pending, now);
                }
            }
            // Then every step that waits, the error step excepted, counts the steps it runs after that hold it back: a
            // pending one (reset, or spared by a stop and counting its first run's ends) is queued when none does, and one
            // released but not leased (scheduled, queued, retrying: spared by a stop) goes back to pending when one does,
            // so that it cannot run before the retried steps end. A leased one runs on (a worker may have started it) and
            // keeps the count, which the ends lower: if its lease ends without an outcome while it is above 0, it goes
            // back to pending, not to its queue (InMemoryStorage.HoldBack). The states these changes move between hold
            // nothing back, so the order of the steps does not matter.
            foreach (var info in workflow.Steps)
            {
                if (info.IsErrorStep || !_storage.Tasks.TryGetValue(info.TaskId, out var task)
                    || task.State is not (TaskState.Pending or TaskState.Scheduled or TaskState.Queued or TaskState.Retrying or TaskState.Running))
                {
                    continue;
                }
                var holding = info.After.Count(a => _storage.Tasks.TryGetValue(taskOf[a], out var before) && HoldsBack(info.RunWhen, before.State));
                if (task.State == TaskState.Running)
                {
                    task.PendingSteps = holding;
                }
                else if (task.State == TaskState.Pending)
                {
                    task.PendingSteps = holding;
                    if (holding == 0)
                    {
                        _storage.Transition(task, TaskState.Queued, now);
                        ready.Add(task.Message.Queue);
                    }
                }
                else if (holding == 0)
                {
                    // Released, and held back by nothing: a count it kept from a lease at an earlier retry is spent.
                    task.PendingSteps = 0;
                }
                else
                {
                    _storage.Transition(task, TaskState.Pending, now);
                    // Out of the due index now: a retry's wait is not kept, the step is released when its count reaches 0.
                    task.NotBefore = null;
                    task.PendingSteps = holding;
                }
            }
            workflow.ActiveSteps = workflow.Steps.Count(s => _storage.Tasks.TryGetValue(s.TaskId, out var t)
                && t.State is TaskState.Scheduled or TaskState.Queued or TaskState.Running or TaskState.Retrying);
        }
        _storage.PublishReady(ready);
        return Task.FromResult(true);
    }

    /// <summary>Whether a step it runs after, in <paramref name="state"/>, holds back a step released by
    /// <paramref name="runWhen"/>: one released when all ended waits for it until it ends, any other until it succeeds. A
    /// step's task that retention deleted had ended: it holds nothing back (as the SQL stores' join finds no row).</summary>
    private static bool HoldsBack(WorkflowRunWhen runWhen, TaskState state) =>
        runWhen == WorkflowRunWhen.AllEnded ? !state.IsTerminal() : state != TaskState.Succeeded;

    /// <inheritdoc />
    public Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var gone = _storage.WorkflowsBySeq
                .Where(w => w.State is WorkflowState.Succeeded or WorkflowState.Failed or WorkflowState.Cancelled && w.FinishedAt < finishedBefore
                    && w.Steps.All(s => !_storage.Tasks.TryGetValue(s.TaskId, out var task) || task.State.IsTerminal()))
                .Take(maxCount)
                .ToHashSet();
            if (gone.Count == 0)
            {
                return Task.FromResult(0);
            }
            var steps = gone.SelectMany(w => w.Steps).Select(s => s.TaskId).Where(_storage.Tasks.ContainsKey).Select(id => _storage.Tasks[id]).ToHashSet();
            _storage.BySeq.RemoveAll(steps.Contains);
            foreach (var task in steps)
            {
                _storage.Tasks.Remove(task.Message.Id);
            }
            _storage.WorkflowsBySeq.RemoveAll(gone.Contains);
            foreach (var workflow in gone)
            {
                _storage.Workflows.Remove(workflow.Id);
            }
            return Task.FromResult(gone.Count);
        }
    }
}
