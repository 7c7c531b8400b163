using Conveyor.Backends;
using Microsoft.Extensions.Options;

namespace Conveyor.Workflows;

/// <summary>The default <see cref="IWorkflowClient"/>: validates, builds each step's message as an enqueue would, and
/// stores the workflow through the backend's <see cref="IWorkflowStore"/>.</summary>
internal sealed class WorkflowClient(IConveyorBackend backend, TaskRegistry registry, TimeProvider time, SchedulerSignal signal,
    IOptions<ConveyorOptions> options, TaskEventBus events, WorkerStatus status) : IWorkflowClient
{
    private IWorkflowStore Store => backend.Workflows
        ?? throw new NotSupportedException($"The {backend.Name} backend does not store workflows yet (docs/workflows.md).");

    public async Task<WorkflowHandle> StartAsync(WorkflowDefinition definition, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var errors = new List<FieldError>();
        WorkflowValidator.Validate(definition, options.Value.MaxWorkflowSteps, registry, requireRegistered: false, errors);
        if (errors.Count > 0)
        {
            throw new TaskValidationException(errors);
        }
        var workflow = Build(definition, registry, time.GetUtcNow());
        await Store.CreateWorkflowAsync(workflow, cancellationToken).ConfigureAwait(false);
        if (workflow.Steps.Any(s => s.Message.NotBefore is not null))
        {
            signal.Notify();
        }
        Publish(WorkflowEventKind.Created, workflow.Id, workflow.Name, WorkflowState.Running, workflow.CreatedAt);
        return new WorkflowHandle(workflow.Id, this);
    }

    /// <summary>The workflow to store: ids assigned, each step's message built as an enqueue builds it, with the
    /// <see cref="WorkflowHeaders"/> that tie it to its workflow and name its dependencies.</summary>
    internal static NewWorkflow Build(WorkflowDefinition definition, TaskRegistry registry, DateTimeOffset now)
    {
        var workflowId = Guid.CreateVersion7(now);
        var taskIds = new Dictionary<string, Guid>(StringComparer.Ordinal);
        foreach (var step in definition.Steps)
        {
            taskIds[step.Id] = Guid.CreateVersion7(now);
        }
        var workflowText = workflowId.ToString();
        var steps = new List<NewWorkflowStep>(definition.Steps.Count + 1);
        NewWorkflowStep BuildStep(WorkflowStep step, bool isErrorStep)
        {
            var message = TaskClient.BuildMessage(step.Request, registry, now);
            var headers = message.Headers is null
                ? new Dictionary<string, string>(StringComparer.Ordinal)
                : new Dictionary<string, string>(message.Headers, StringComparer.Ordinal);
            headers[WorkflowHeaders.Workflow] = workflowText;
            headers[WorkflowHeaders.Step] = step.Id;
            if (step.After.Count > 0)
            {
                headers[WorkflowHeaders.After] = string.Join(',', step.After.Select(a => $"{a}={taskIds[a]}"));
            }
            if (isErrorStep)
            {
                headers[WorkflowHeaders.ErrorStep] = "1";
            }
            var taskId = isErrorStep ? Guid.CreateVersion7(now) : taskIds[step.Id];
            return new NewWorkflowStep(step.Id, message with { Id = taskId, Headers = headers }, [.. step.After.Select(a => taskIds[a])])
            {
                // The error step's failure cancels nothing: the workflow has failed already.
                OnFailure = isErrorStep ? WorkflowFailurePolicy.Continue : step.OnFailure ?? definition.OnFailure,
                IsErrorStep = isErrorStep,
                RunWhen = isErrorStep ? WorkflowRunWhen.AllSucceeded : step.RunWhen,
            };
        }
        foreach (var step in definition.Steps)
        {
            steps.Add(BuildStep(step, isErrorStep: false));
        }
        if (definition.OnError is { } onError)
        {
            steps.Add(BuildStep(onError, isErrorStep: true));
        }
        return new NewWorkflow { Id = workflowId, Name = definition.Name, CreatedAt = now, Steps = steps };
    }

    public async Task<WorkflowRecord?> GetAsync(Guid workflowId, CancellationToken cancellationToken = default)
    {
        var store = Store;
        if (await store.GetWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false) is not { } workflow)
        {
            return null;
        }
        var tasks = await store.GetWorkflowTasksAsync(workflowId, cancellationToken).ConfigureAwait(false);
        return WorkflowRecord.From(workflow, tasks);
    }

    /// <summary>The workflow's state alone (no step read), or null when unknown.</summary>
    internal async Task<WorkflowState?> GetStateAsync(Guid workflowId, CancellationToken cancellationToken) =>
        (await Store.GetWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false))?.State;

    public Task<WorkflowPage> ListAsync(WorkflowQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        return Store.ListWorkflowsAsync(query, cancellationToken);
    }

    public async Task<bool> CancelAsync(Guid workflowId, CancellationToken cancellationToken = default)
    {
        var cancelled = await Store.CancelWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false);
        if (cancelled)
        {
            await PublishCancelledAsync(workflowId, cancellationToken).ConfigureAwait(false);
        }
        return cancelled;
    }

    public async Task<bool> RetryAsync(Guid workflowId, CancellationToken cancellationToken = default)
    {
        // Read first: once the store has it, a worker may run the retried steps and the workflow end again before this
        // returns. The event's time is taken before the change, so it is never after the next end's.
        var before = events.IsWorkflowObserved
            ? await Store.GetWorkflowSummaryAsync(workflowId, cancellationToken).ConfigureAwait(false)
            : null;
        var at = time.GetUtcNow();
        var retried = await Store.RetryWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false);
        if (retried && before is not null)
        {
            Publish(WorkflowEventKind.Retried, workflowId, before.Name, WorkflowState.Running, at);
        }
        return retried;
    }

    /// <summary>Raises the event of a cancel made here, with the stored end time (as an end raised elsewhere would carry),
    /// reading the workflow only when watched.</summary>
    private async Task PublishCancelledAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        if (events.IsWorkflowObserved
            && await Store.GetWorkflowSummaryAsync(workflowId, cancellationToken).ConfigureAwait(false) is { } summary)
        {
            Publish(WorkflowEventKind.Cancelled, workflowId, summary.Name, WorkflowState.Cancelled, summary.FinishedAt ?? time.GetUtcNow());
        }
    }

    private void Publish(WorkflowEventKind kind, Guid workflowId, string? name, WorkflowState state, DateTimeOffset at)
    {
        if (events.IsWorkflowObserved)
        {
            events.PublishWorkflow(new WorkflowEvent
            {
                Kind = kind,
                WorkflowId = workflowId,
                Name = name,
                State = state,
                At = at,
                Origin = status.WorkerId,
            });
        }
    }

    public async Task<IReadOnlyList<StepFailure>> GetFailuresAsync(TaskContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.WorkflowId() is not { } workflowId || await GetAsync(workflowId, cancellationToken).ConfigureAwait(false) is not { } workflow)
        {
            return [];
        }
        return WorkflowRecord.Failures(workflow);
    }

    public async Task<IReadOnlyList<StepInput>> GetInputsAsync(TaskContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var dependencies = WorkflowHeaders.Dependencies(context.Message);
        if (dependencies.Count == 0)
        {
            return [];
        }
        if (dependencies.Count == 1)
        {
            var (stepId, taskId) = dependencies[0];
            var task = await backend.Store.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
            return [Input(stepId, taskId, task)];
        }
        // Many inputs (a chord's callback): one read of the workflow's tasks rather than one per input.
        var workflowId = context.WorkflowId() ?? throw new InvalidOperationException("The step's message has no workflow header.");
        var tasks = (await Store.GetWorkflowTasksAsync(workflowId, cancellationToken).ConfigureAwait(false)).ToDictionary(t => t.Id);
        return [.. dependencies.Select(d => Input(d.StepId, d.TaskId, tasks.GetValueOrDefault(d.TaskId)))];
    }

    private static StepInput Input(string stepId, Guid taskId, TaskRecord? task) =>
        new(stepId, taskId, task?.State == TaskState.Succeeded ? task.Result : null)
        {
            State = task?.State,
            Error = task?.State is TaskState.Dead or TaskState.Expired ? task.Error : null,
        };
}
