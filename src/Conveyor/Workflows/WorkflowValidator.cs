namespace Conveyor.Workflows;

/// <summary>Checks a workflow before anything is stored; used by the client and the HTTP API alike. Every error names
/// the step (<c>steps[3].after</c>, with the step's id in the message).</summary>
public static class WorkflowValidator
{
    /// <summary>Longest step id, in characters.</summary>
    public const int MaxStepIdLength = 100;

    /// <summary>Longest workflow name, in characters.</summary>
    public const int MaxNameLength = 200;

    /// <summary>Adds the problems of <paramref name="definition"/> to <paramref name="errors"/>: a step id that is missing,
    /// malformed or used twice; an <c>after</c> naming no step of the workflow, or the step itself; a cycle; more than
    /// <paramref name="maxSteps"/> steps; an error step (<see cref="WorkflowDefinition.OnError"/>) with a clashing id,
    /// an <c>after</c> of its own, or named in a step's <c>after</c>; each step's task request as <see cref="TaskRequestValidator"/> checks it (with
    /// <paramref name="registry"/> and <paramref name="requireRegistered"/>); and what steps do not support yet.</summary>
    public static void Validate(WorkflowDefinition definition, int maxSteps, TaskRegistry? registry, bool requireRegistered, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentNullException.ThrowIfNull(errors);
        var steps = definition.Steps;
        if (definition.Name is { } name && (name.Length == 0 || name.Length > MaxNameLength))
        {
            errors.Add(new("name", $"must be 1 to {MaxNameLength} characters"));
        }
        if (steps is null || steps.Count == 0)
        {
            errors.Add(new("steps", "a workflow needs at least one step"));
            return;
        }
        if (steps.Count > maxSteps)
        {
            errors.Add(new("steps", $"has {steps.Count:N0} steps; at most {maxSteps:N0} (Conveyor:MaxWorkflowSteps)"));
            return;
        }
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < steps.Count; i++)
        {
            var step = steps[i];
            var prefix = $"steps[{i}].";
            if (step is null)
            {
                errors.Add(new($"steps[{i}]", "is null"));
                continue;
            }
            if (!IsValidStepId(step.Id))
            {
                errors.Add(new(prefix + "id", $"'{step.Id}' is not a valid step id: 1 to {MaxStepIdLength} letters, digits, '.', '-' or '_'"));
            }
            else if (!index.TryAdd(step.Id, i))
            {
                errors.Add(new(prefix + "id", $"step '{step.Id}' is defined twice (steps[{index[step.Id]}] has that id too)"));
            }
            if (step.Request is null)
            {
                errors.Add(new(prefix + "task", $"step '{step.Id}' has no task"));
                continue;
            }
            var stepErrors = new List<FieldError>();
            TaskRequestValidator.Validate(step.Request, registry, requireRegistered, prefix, stepErrors);
            foreach (var error in stepErrors)
            {
                errors.Add(error with { Message = $"step '{step.Id}': {error.Message}" });
            }
            var options = step.Request.Options;
            if (options?.IdempotencyKey is not null)
            {
                errors.Add(new(prefix + "idempotencyKey", $"step '{step.Id}': workflow steps do not take an idempotency key (not supported yet)"));
            }
            if (options?.UniqueKey is not null)
            {
                errors.Add(new(prefix + "uniqueKey", $"step '{step.Id}': workflow steps do not take a unique key (not supported yet)"));
            }
            // A step that waits for nothing has nothing to have ended: "all ended" would only spare it from a stop.
            if (step.RunWhen == WorkflowRunWhen.AllEnded && step.After is not { Count: > 0 })
            {
                errors.Add(new(prefix + "runWhen", $"step '{step.Id}': runs when all ended, but runs after no other step: name those it waits for"));
            }
            if (step.After is { Count: > 0 } && (options?.Delay is not null || options?.Eta is not null))
            {
                errors.Add(new(prefix + (options?.Delay is not null ? "delay" : "eta"), $"step '{step.Id}': only a step that runs after no other may have a delay or ETA"));
            }
            if (options?.Headers is { } headers)
            {
                foreach (var header in headers.Keys.Where(IsReservedHeader))
                {
                    errors.Add(new($"{prefix}headers.{header}", $"step '{step.Id}': is reserved: Conveyor ties a step to its workflow with it"));
                }
            }
        }
        if (definition.OnError is { } onError)
        {
            if (onError.Request is null)
            {
                errors.Add(new("onError.task", $"error step '{onError.Id}' has no task"));
            }
            else if (!IsValidStepId(onError.Id))
            {
                errors.Add(new("onError.id", $"'{onError.Id}' is not a valid step id: 1 to {MaxStepIdLength} letters, digits, '.', '-' or '_'"));
            }
            else if (index.TryGetValue(onError.Id, out var clash))
            {
                errors.Add(new("onError.id", $"error step '{onError.Id}' has the id of steps[{clash}]"));
            }
            else
            {
                if (onError.After is { Count: > 0 })
                {
                    errors.Add(new("onError.after", $"error step '{onError.Id}' runs when a step fails, after no step"));
                }
                var stepErrors = new List<FieldError>();
                TaskRequestValidator.Validate(onError.Request, registry, requireRegistered, "onError.", stepErrors);
                foreach (var error in stepErrors)
                {
                    errors.Add(error with { Message = $"error step '{onError.Id}': {error.Message}" });
                }
                var options = onError.Request.Options;
                if (options?.IdempotencyKey is not null || options?.UniqueKey is not null || options?.Delay is not null || options?.Eta is not null)
                {
                    errors.Add(new("onError", $"error step '{onError.Id}': takes no idempotency key, unique key, delay or ETA"));
                }
                if (options?.Headers is { } headers)
                {
                    foreach (var header in headers.Keys.Where(IsReservedHeader))
                    {
                        errors.Add(new($"onError.headers.{header}", $"error step '{onError.Id}': is reserved: Conveyor ties a step to its workflow with it"));
                    }
                }
            }
            for (var i = 0; i < steps.Count; i++)
            {
                if (steps[i]?.After is { } stepAfter && stepAfter.Contains(onError.Id))
                {
                    errors.Add(new($"steps[{i}].after", $"step '{steps[i].Id}' runs after the error step '{onError.Id}', which runs only when a step fails"));
                }
            }
        }
        if (errors.Count > 0)
        {
            return;
        }
        for (var i = 0; i < steps.Count; i++)
        {
            var step = steps[i];
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var after in step.After ?? [])
            {
                if (after == step.Id)
                {
                    errors.Add(new($"steps[{i}].after", $"step '{step.Id}' runs after itself"));
                }
                else if (after is null || !index.ContainsKey(after))
                {
                    errors.Add(new($"steps[{i}].after", $"step '{step.Id}' runs after '{after}', which is not a step of this workflow"));
                }
                else if (!seen.Add(after))
                {
                    errors.Add(new($"steps[{i}].after", $"step '{step.Id}' names '{after}' twice"));
                }
            }
        }
        if (errors.Count == 0 && FindCycle(steps, index) is { } cycle)
        {
            errors.Add(new($"steps[{index[cycle[0]]}].after", $"step '{cycle[0]}' is in a cycle: {string.Join(" → ", cycle)} (each runs after the next)"));
        }
    }

    /// <summary>Whether <paramref name="id"/> is a valid step id.</summary>
    public static bool IsValidStepId(string? id) => QueueNames.IsValid(id) && id!.Length <= MaxStepIdLength;

    /// <summary>Whether a header name is one Conveyor sets on steps (<see cref="WorkflowHeaders"/>).</summary>
    public static bool IsReservedHeader(string name) =>
        name is WorkflowHeaders.Workflow or WorkflowHeaders.Step or WorkflowHeaders.After or WorkflowHeaders.ErrorStep;

    // Depth-first search with colours; returns the step ids of one cycle, first repeated last.
    private static List<string>? FindCycle(IReadOnlyList<WorkflowStep> steps, Dictionary<string, int> index)
    {
        var colour = new byte[steps.Count]; // 0 unseen, 1 on the path, 2 done
        var path = new List<int>();
        for (var root = 0; root < steps.Count; root++)
        {
            if (colour[root] != 0)
            {
                continue;
            }
            // Iterative, so that a chain of 100,000 steps does not overflow the stack.
            var stack = new Stack<(int Step, int Next)>();
            stack.Push((root, 0));
            colour[root] = 1;
            path.Add(root);
            while (stack.Count > 0)
            {
                var (step, next) = stack.Pop();
                var after = steps[step].After;
                if (next < after.Count)
                {
                    stack.Push((step, next + 1));
                    var target = index[after[next]];
                    if (colour[target] == 1)
                    {
                        var start = path.IndexOf(target);
                        var cycle = path.Skip(start).Select(s => steps[s].Id).ToList();
                        cycle.Add(steps[target].Id);
                        return cycle;
                    }
                    if (colour[target] == 0)
                    {
                        colour[target] = 1;
                        path.Add(target);
                        stack.Push((target, 0));
                    }
                    continue;
                }
                colour[step] = 2;
                path.RemoveAt(path.Count - 1);
            }
        }
        return null;
    }
}
