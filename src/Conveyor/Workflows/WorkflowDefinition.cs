namespace Conveyor.Workflows;

/// <summary>One step of a workflow: a task with its arguments, an id, and the steps it runs after.</summary>
/// <param name="Id">The step's id within its workflow: letters, digits, <c>.</c>, <c>-</c> and <c>_</c>, 1 to 100
/// characters.</param>
/// <param name="Request">The task to run, with its arguments and options (queue, priority, attempts, retry, timeout). A
/// step with dependencies takes no delay or ETA; no step takes an idempotency or unique key (not supported yet).</param>
/// <param name="After">Ids of the steps it runs after, in the order its inputs are given in; empty for a first step.</param>
public sealed record WorkflowStep(string Id, TaskRequest Request, IReadOnlyList<string> After)
{
    /// <summary>A step without dependencies.</summary>
    public WorkflowStep(string id, TaskRequest request) : this(id, request, []) { }

    /// <summary>What this step's failure does to its workflow; null: the workflow's
    /// <see cref="WorkflowDefinition.OnFailure"/>.</summary>
    public WorkflowFailurePolicy? OnFailure { get; init; }

    /// <summary>When it is released: once every step it runs after has succeeded (the default), or once each has ended,
    /// whatever its outcome (<see cref="WorkflowRunWhen.AllEnded"/>: a batch's <c>onComplete</c>).</summary>
    public WorkflowRunWhen RunWhen { get; init; }
}

/// <summary>When a step that runs after others is released.</summary>
/// <remarks>The numeric values are stored by backends: never renumber them.</remarks>
public enum WorkflowRunWhen
{
    /// <summary>Once every step it runs after has succeeded; a failure of one of them means it never runs. The default.</summary>
    AllSucceeded = 0,
    /// <summary>Once every step it runs after has ended — succeeded, dead, expired or cancelled (Sidekiq's batch
    /// <c>complete</c> callback). It reads their outcomes with <see cref="IWorkflowClient.GetInputsAsync"/> (each
    /// input's <see cref="StepInput.State"/>, result or error). A failure under <see cref="WorkflowFailurePolicy.Stop"/>
    /// does not cancel it (it is spared, as the error step is): it runs once the steps it runs after have ended, running
    /// ones finished and those the stop cancelled. Cancelling the workflow cancels it.</summary>
    AllEnded = 1,
}

/// <summary>What a step's failure (dead, expired or cancelled, after its own retries) does to its workflow.</summary>
/// <remarks>The numeric values are stored by backends: never renumber them.</remarks>
public enum WorkflowFailurePolicy
{
    /// <summary>The workflow fails at once: its steps that have not started are cancelled (its error step excepted);
    /// steps already running finish. The default.</summary>
    Stop = 0,
    /// <summary>The other branches go on: the steps that run after the failed one (directly or not) can never run and
    /// stay pending until nothing of the workflow is running any more; then they are cancelled and the workflow ends
    /// failed.</summary>
    Continue = 1,
}

/// <summary>
/// A workflow: a directed acyclic graph of steps. Each step runs once every step it runs after has succeeded, and reads
/// their results (<see cref="IWorkflowClient.GetInputsAsync"/>); when a step fails (after its own retries), the workflow
/// fails and the steps that have not started are cancelled. Build one with <see cref="Workflow"/>: <c>Workflow.Chain</c>,
/// <c>Workflow.Group</c>, <c>Workflow.Chord</c>, or step by step with <c>Workflow.Create().Step(…)</c>.
/// </summary>
/// <param name="Steps">The steps.</param>
/// <param name="Name">Optional name, shown and filtered on in listings; at most 200 characters.</param>
public sealed record WorkflowDefinition(IReadOnlyList<WorkflowStep> Steps, string? Name = null)
{
    /// <summary>What a step's failure does to the workflow, for steps that do not say
    /// (<see cref="WorkflowStep.OnFailure"/>). Default <see cref="WorkflowFailurePolicy.Stop"/>.</summary>
    public WorkflowFailurePolicy OnFailure { get; init; }

    /// <summary>The error step: runs once, when the first step of the workflow fails, and reads the failures with
    /// <see cref="IWorkflowClient.GetFailuresAsync"/>; cancelled (never run) when no step fails. It runs after no step
    /// (<see cref="WorkflowStep.After"/> empty) and no step runs after it. Null: none.</summary>
    public WorkflowStep? OnError { get; init; }
}

/// <summary>Builds workflows: a DAG step by step, and the chain, group and chord shorthands.</summary>
public sealed class Workflow
{
    private readonly List<WorkflowStep> _steps = [];
    private readonly string? _name;
    private WorkflowFailurePolicy _onFailure;
    private WorkflowStep? _onError;

    private Workflow(string? name) => _name = name;

    /// <summary>Starts an empty workflow.</summary>
    public static Workflow Create(string? name = null) => new(name);

    /// <summary>Adds a step that runs <paramref name="task"/> with <paramref name="args"/> (serialized to JSON) after the
    /// steps named in <paramref name="after"/>.</summary>
    public Workflow Step<TArgs>(string id, string task, TArgs args, params string[] after) =>
        Step(id, TaskRequest.Create(task, args), after);

    /// <summary>Adds a step without arguments.</summary>
    public Workflow Step(string id, string task, params string[] after) => Step(id, new TaskRequest(task), after);

    /// <summary>Adds a step.</summary>
    public Workflow Step(string id, TaskRequest request, params string[] after)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(after);
        _steps.Add(new WorkflowStep(id, request, [.. after]));
        return this;
    }

    /// <summary>Adds a step that runs after the step added last (a link of a chain); the first step runs at once.</summary>
    public Workflow Then(string id, TaskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        _steps.Add(new WorkflowStep(id, request, _steps.Count == 0 ? [] : [_steps[^1].Id]));
        return this;
    }

    /// <summary>Adds a step given whole (with its own <see cref="WorkflowStep.OnFailure"/>, say).</summary>
    public Workflow Step(WorkflowStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        _steps.Add(step);
        return this;
    }

    /// <summary>With no step ids: a failed step no longer stops the workflow, whose other branches go on
    /// (<see cref="WorkflowFailurePolicy.Continue"/>). With step ids: only those steps' failures (steps added before).</summary>
    public Workflow ContinueOnFailure(params string[] stepIds) => Policy(WorkflowFailurePolicy.Continue, stepIds);

    /// <summary>With no step ids: a failed step stops the workflow (the default). With step ids: those steps' failures
    /// stop it even when the workflow continues on failure.</summary>
    public Workflow StopOnFailure(params string[] stepIds) => Policy(WorkflowFailurePolicy.Stop, stepIds);

    /// <summary>Those steps (added before) run once every step they run after has ended, whatever its outcome
    /// (<see cref="WorkflowRunWhen.AllEnded"/>), rather than once each succeeded.</summary>
    public Workflow RunWhenAllEnded(params string[] stepIds)
    {
        ArgumentNullException.ThrowIfNull(stepIds);
        foreach (var id in stepIds)
        {
            var i = _steps.FindIndex(s => s.Id == id);
            if (i < 0)
            {
                throw new ArgumentException($"No step '{id}' was added before.", nameof(stepIds));
            }
            if (_steps[i].After.Count == 0)
            {
                throw new ArgumentException($"Step '{id}' runs after no other step: it has nothing to have ended.", nameof(stepIds));
            }
            _steps[i] = _steps[i] with { RunWhen = WorkflowRunWhen.AllEnded };
        }
        return this;
    }

    private Workflow Policy(WorkflowFailurePolicy policy, string[] stepIds)
    {
        ArgumentNullException.ThrowIfNull(stepIds);
        if (stepIds.Length == 0)
        {
            _onFailure = policy;
            return this;
        }
        foreach (var id in stepIds)
        {
            var i = _steps.FindIndex(s => s.Id == id);
            if (i < 0)
            {
                throw new ArgumentException($"No step '{id}' was added before.", nameof(stepIds));
            }
            _steps[i] = _steps[i] with { OnFailure = policy };
        }
        return this;
    }

    /// <summary>Sets the error step: <paramref name="request"/> runs, as step <paramref name="id"/>, when the first step
    /// of the workflow fails (<see cref="WorkflowDefinition.OnError"/>).</summary>
    public Workflow OnError(string id, TaskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        _onError = new WorkflowStep(id, request);
        return this;
    }

    /// <summary>The definition built so far.</summary>
    public WorkflowDefinition Build() => new([.. _steps], _name) { OnFailure = _onFailure, OnError = _onError };

    /// <summary>Steps that run one after the other, each given its predecessor's result. Step ids are <c>0</c>, <c>1</c>, ….</summary>
    public static WorkflowDefinition Chain(IEnumerable<TaskRequest> tasks, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        var workflow = Create(name);
        var i = 0;
        foreach (var task in tasks)
        {
            workflow.Then(Id(i++), task);
        }
        return workflow.Build();
    }

    /// <summary>Steps that run side by side. Step ids are <c>0</c>, <c>1</c>, ….</summary>
    public static WorkflowDefinition Group(IEnumerable<TaskRequest> tasks, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        var workflow = Create(name);
        var i = 0;
        foreach (var task in tasks)
        {
            workflow.Step(Id(i++), task);
        }
        return workflow.Build();
    }

    /// <summary>A group whose steps run side by side, then a callback (step id <c>callback</c>) given all of their
    /// results, in the group's order. Group step ids are <c>0</c>, <c>1</c>, ….</summary>
    public static WorkflowDefinition Chord(IEnumerable<TaskRequest> group, TaskRequest callback, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(callback);
        var workflow = Create(name);
        var ids = new List<string>();
        foreach (var task in group)
        {
            var id = Id(ids.Count);
            workflow.Step(id, task);
            ids.Add(id);
        }
        workflow.Step(ChordCallbackId, callback, [.. ids]);
        return workflow.Build();
    }

    /// <summary>The step id of a chord's callback.</summary>
    public const string ChordCallbackId = "callback";

    /// <summary>The step id of a batch's error step (<c>onError</c>).</summary>
    public const string BatchErrorStepId = "error";

    /// <summary>The step id of a batch's completion callback (<c>onComplete</c>).</summary>
    public const string BatchCompleteStepId = "complete";

    /// <summary>
    /// A batch (Sidekiq's batches, Hangfire's batch jobs): tasks stored all or nothing that run side by side, each to its
    /// own end — a member's failure (after its retries) stops none of the others (<see cref="WorkflowFailurePolicy.Continue"/>).
    /// <paramref name="onSuccess"/>, if given, runs once every member succeeded (step id <see cref="ChordCallbackId"/>),
    /// given all of their results in order; <paramref name="onError"/>, if given, runs once at the first member's
    /// failure, while the others go on (step id <see cref="BatchErrorStepId"/>, reading the failures with
    /// <see cref="IWorkflowClient.GetFailuresAsync"/>). <paramref name="onComplete"/>, if given, runs once every member
    /// has ended, whatever the outcomes (step id <see cref="BatchCompleteStepId"/>, <see cref="WorkflowRunWhen.AllEnded"/>:
    /// Sidekiq's <c>complete</c>), given every member's outcome in order (<see cref="IWorkflowClient.GetInputsAsync"/>: each
    /// member's state, and its result or error); it runs also when the batch's policy is <see cref="WorkflowFailurePolicy.Stop"/>
    /// and a member failed, and is cancelled only with the workflow. Member step ids are <c>0</c>, <c>1</c>, …; wait for their results
    /// with <see cref="WorkflowHandle.WaitForMembersAsync{T}"/>. The batch is a workflow: listed, read, cancelled, retried
    /// and announced as one.
    /// </summary>
    public static WorkflowDefinition Batch(IEnumerable<TaskRequest> tasks, TaskRequest? onSuccess = null, TaskRequest? onError = null,
        string? name = null, TaskRequest? onComplete = null)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        var workflow = Create(name).ContinueOnFailure();
        var ids = new List<string>();
        foreach (var task in tasks)
        {
            var id = Id(ids.Count);
            workflow.Step(id, task);
            ids.Add(id);
        }
        if (onSuccess is not null)
        {
            workflow.Step(ChordCallbackId, onSuccess, [.. ids]);
        }
        if (onComplete is not null)
        {
            workflow.Step(new WorkflowStep(BatchCompleteStepId, onComplete, [.. ids]) { RunWhen = WorkflowRunWhen.AllEnded });
        }
        if (onError is not null)
        {
            workflow.OnError(BatchErrorStepId, onError);
        }
        return workflow.Build();
    }

    /// <summary>The step id the group, chord and batch shorthands give their <paramref name="index"/>-th member.</summary>
    internal static string MemberId(int index) => Id(index);

    private static string Id(int index) => index.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>The headers that tie a step's task to its workflow (reserved: a request's own headers cannot set them).</summary>
public static class WorkflowHeaders
{
    /// <summary>The workflow's id.</summary>
    public const string Workflow = "conveyor-workflow";
    /// <summary>The step's id.</summary>
    public const string Step = "conveyor-step";
    /// <summary>The steps it runs after, in order, as <c>stepId=taskId</c> separated by commas.</summary>
    public const string After = "conveyor-after";
    /// <summary>Set (to <c>1</c>) on the workflow's error step.</summary>
    public const string ErrorStep = "conveyor-error-step";

    /// <summary>The workflow of a task's message, or null when it is not a step.</summary>
    public static Guid? WorkflowId(this TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Message.Headers is { } headers && headers.TryGetValue(Workflow, out var id) && Guid.TryParse(id, out var guid) ? guid : null;
    }

    /// <summary>The workflow and step of a message, or nulls when it is not a step.</summary>
    public static (Guid? WorkflowId, string? StepId) StepOf(TaskMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return StepOf(message.Headers);
    }

    /// <summary>The workflow and step named by a task's headers, or nulls when it is not a step.</summary>
    public static (Guid? WorkflowId, string? StepId) StepOf(IReadOnlyDictionary<string, string>? headers) =>
        headers is not null && headers.TryGetValue(Workflow, out var id) && Guid.TryParse(id, out var guid)
            ? (guid, headers.TryGetValue(Step, out var step) ? step : null)
            : (null, null);

    /// <summary>The step id of a task's message, or null when it is not a step.</summary>
    public static string? StepId(this TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Message.Headers is { } headers && headers.TryGetValue(Step, out var id) ? id : null;
    }

    /// <summary>The steps a message's step runs after, in order: (step id, task id).</summary>
    public static IReadOnlyList<(string StepId, Guid TaskId)> Dependencies(TaskMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.Headers is not { } headers || !headers.TryGetValue(After, out var text) || text.Length == 0)
        {
            return [];
        }
        var result = new List<(string, Guid)>();
        foreach (var pair in text.Split(','))
        {
            var equals = pair.LastIndexOf('=');
            result.Add((pair[..equals], Guid.Parse(pair[(equals + 1)..])));
        }
        return result;
    }
}
