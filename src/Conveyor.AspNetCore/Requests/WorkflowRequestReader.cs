using System.Text.Json;
using System.Text.Json.Nodes;
using Conveyor.Workflows;

namespace Conveyor.AspNetCore.Requests;

/// <summary>
/// Reads workflow bodies (<c>POST /api/v1/workflows</c>) into definitions, naming every problem's field: a DAG
/// (<c>{"name", "steps": [{"id", "after": [...], "task", "args", …}]}</c>) or one of the shorthands
/// (<c>{"chain": [tasks]}</c>, <c>{"group": [tasks]}</c>, <c>{"chord": {"group": [tasks], "callback": task}}</c>,
/// <c>{"batch": {"tasks": [tasks], "onSuccess": task, "onComplete": task}}</c>, whose failure policy is <c>continue</c>
/// unless given), each task read as an enqueue reads it; a step may say <c>"runWhen": "allSucceeded" | "allEnded"</c>;
/// with <c>"onFailure": "stop" | "continue"</c> (the workflow's, or a step's) and
/// <c>"onError": {"id", "task", "args", …}</c> (the error step; id <c>error</c> when not given).
/// </summary>
internal sealed class WorkflowRequestReader(EnqueueRequestReader tasks)
{
    private const string KnownFields = "name, steps, chain, group, chord, batch, onFailure, onError";

    /// <summary>The error step's id when its body gives none.</summary>
    public const string DefaultErrorStepId = "error";

    /// <summary>Reads a definition; adds problems to <paramref name="errors"/>. Null when the body names no steps.</summary>
    public WorkflowDefinition? Read(JsonElement body, List<FieldError> errors)
    {
        string? name = null;
        WorkflowFailurePolicy? onFailure = null;
        WorkflowStep? onError = null;
        WorkflowDefinition? definition = null;
        var shapes = 0;
        var isBatch = false;
        foreach (var property in body.EnumerateObject())
        {
            var value = property.Value;
            var field = property.Name;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            switch (field)
            {
                case "name":
                    name = EnqueueRequestReader.ReadString(value, field, errors);
                    break;
                case "steps":
                    shapes++;
                    definition = ReadSteps(value, errors);
                    break;
                case "chain":
                    shapes++;
                    definition = ReadTasks(value, field, errors) is { } chain ? Workflow.Chain(chain) : null;
                    break;
                case "group":
                    shapes++;
                    definition = ReadTasks(value, field, errors) is { } group ? Workflow.Group(group) : null;
                    break;
                case "chord":
                    shapes++;
                    definition = ReadChord(value, errors);
                    break;
                case "batch":
                    shapes++;
                    isBatch = true;
                    definition = ReadBatch(value, errors);
                    break;
                case "onFailure":
                    onFailure = ReadPolicy(value, field, errors);
                    break;
                case "onError":
                    onError = ReadErrorStep(value, errors);
                    break;
                default:
                    errors.Add(new(field, $"is not a field of a workflow; known fields: {KnownFields}"));
                    break;
            }
        }
        if (shapes == 0)
        {
            errors.Add(new("steps", "is required (or one of chain, group, chord, batch)"));
        }
        else if (shapes > 1)
        {
            errors.Add(new("steps", "give one of steps, chain, group, chord or batch"));
        }
        // A batch's members each run to their own end unless the body says otherwise.
        var policy = onFailure ?? (isBatch ? WorkflowFailurePolicy.Continue : WorkflowFailurePolicy.Stop);
        return definition is null ? null : definition with { Name = name, OnFailure = policy, OnError = onError };
    }

    private static WorkflowFailurePolicy? ReadPolicy(JsonElement value, string field, List<FieldError> errors)
    {
        switch (value.ValueKind == JsonValueKind.String ? value.GetString() : null)
        {
            case "stop":
                return WorkflowFailurePolicy.Stop;
            case "continue":
                return WorkflowFailurePolicy.Continue;
            default:
                errors.Add(new(field, "must be \"stop\" (a failed step stops the workflow) or \"continue\" (the other branches go on)"));
                return null;
        }
    }

    private static WorkflowRunWhen ReadRunWhen(JsonElement value, string field, List<FieldError> errors)
    {
        switch (value.ValueKind == JsonValueKind.String ? value.GetString() : null)
        {
            case "allSucceeded":
                return WorkflowRunWhen.AllSucceeded;
            case "allEnded":
                return WorkflowRunWhen.AllEnded;
            default:
                errors.Add(new(field, "must be \"allSucceeded\" (once every step it runs after succeeded, the default) or \"allEnded\" (once each ended, whatever the outcome)"));
                return WorkflowRunWhen.AllSucceeded;
        }
    }

    private WorkflowStep? ReadErrorStep(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("onError", "must be a step {\"id\", \"task\", \"args\", …} that runs when a step fails"));
            return null;
        }
        var id = DefaultErrorStepId;
        var task = JsonNode.Parse(value.GetRawText())!.AsObject();
        if (value.TryGetProperty("id", out var idValue))
        {
            id = EnqueueRequestReader.ReadString(idValue, "onError.id", errors) ?? id;
            task.Remove("id");
        }
        if (value.TryGetProperty("after", out _))
        {
            errors.Add(new("onError.after", "the error step runs when a step fails, after no step"));
            task.Remove("after");
        }
        using var document = JsonDocument.Parse(task.ToJsonString());
        return tasks.ReadTask(document.RootElement, "onError.", errors) is { } request ? new WorkflowStep(id, request) : null;
    }

    private WorkflowDefinition? ReadSteps(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new("steps", "must be an array of steps: {\"id\", \"task\", \"args\", \"after\": [step ids]}"));
            return null;
        }
        var steps = new List<WorkflowStep>();
        var i = 0;
        foreach (var element in value.EnumerateArray())
        {
            var prefix = $"steps[{i++}].";
            if (element.ValueKind != JsonValueKind.Object)
            {
                errors.Add(new(prefix.TrimEnd('.'), "must be a JSON object with at least an \"id\" and a \"task\""));
                continue;
            }
            string? id = null;
            WorkflowFailurePolicy? onFailure = null;
            var after = new List<string>();
            // The step's own fields come out; the rest is a task as an enqueue reads it.
            var task = JsonNode.Parse(element.GetRawText())!.AsObject();
            if (element.TryGetProperty("id", out var idValue))
            {
                id = EnqueueRequestReader.ReadString(idValue, prefix + "id", errors);
                task.Remove("id");
            }
            if (element.TryGetProperty("onFailure", out var policyValue))
            {
                task.Remove("onFailure");
                if (policyValue.ValueKind != JsonValueKind.Null)
                {
                    onFailure = ReadPolicy(policyValue, prefix + "onFailure", errors);
                }
            }
            var runWhen = WorkflowRunWhen.AllSucceeded;
            if (element.TryGetProperty("runWhen", out var runWhenValue))
            {
                task.Remove("runWhen");
                if (runWhenValue.ValueKind != JsonValueKind.Null)
                {
                    runWhen = ReadRunWhen(runWhenValue, prefix + "runWhen", errors);
                }
            }
            if (element.TryGetProperty("after", out var afterValue))
            {
                task.Remove("after");
                if (afterValue.ValueKind == JsonValueKind.Array)
                {
                    foreach (var dependency in afterValue.EnumerateArray())
                    {
                        if (EnqueueRequestReader.ReadString(dependency, prefix + "after", errors) is { } dependencyId)
                        {
                            after.Add(dependencyId);
                        }
                    }
                }
                else if (afterValue.ValueKind != JsonValueKind.Null)
                {
                    errors.Add(new(prefix + "after", "must be an array of step ids"));
                }
            }
            if (id is null && !errors.Exists(e => e.Field == prefix + "id"))
            {
                errors.Add(new(prefix + "id", "is required"));
            }
            using var document = JsonDocument.Parse(task.ToJsonString());
            if (tasks.ReadTask(document.RootElement, prefix, errors) is { } request)
            {
                steps.Add(new WorkflowStep(id ?? "", request, after) { OnFailure = onFailure, RunWhen = runWhen });
            }
        }
        return new WorkflowDefinition(steps);
    }

    private List<TaskRequest>? ReadTasks(JsonElement value, string field, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new(field, "must be an array of tasks"));
            return null;
        }
        var requests = new List<TaskRequest>();
        var i = 0;
        foreach (var element in value.EnumerateArray())
        {
            if (tasks.ReadTask(element, $"{field}[{i++}].", errors) is { } request)
            {
                requests.Add(request);
            }
        }
        return requests;
    }

    private WorkflowDefinition? ReadChord(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty("group", out var group) || !value.TryGetProperty("callback", out var callback))
        {
            errors.Add(new("chord", "must be an object {\"group\": [tasks], \"callback\": task}"));
            return null;
        }
        var members = ReadTasks(group, "chord.group", errors);
        var request = tasks.ReadTask(callback, "chord.callback.", errors);
        return members is null || request is null ? null : Workflow.Chord(members, request);
    }

    private WorkflowDefinition? ReadBatch(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty("tasks", out var members))
        {
            errors.Add(new("batch", "must be an object {\"tasks\": [tasks], \"onSuccess\": task (optional), \"onComplete\": task (optional)}"));
            return null;
        }
        foreach (var property in value.EnumerateObject())
        {
            if (property.Name is not ("tasks" or "onSuccess" or "onComplete"))
            {
                errors.Add(new($"batch.{property.Name}", "is not a field of a batch; known fields: tasks, onSuccess, onComplete (the failure callback is the workflow's onError)"));
            }
        }
        var requests = ReadTasks(members, "batch.tasks", errors);
        var onSuccess = ReadCallback(value, "onSuccess", errors, out var badSuccess);
        var onComplete = ReadCallback(value, "onComplete", errors, out var badComplete);
        return requests is null || badSuccess || badComplete ? null : Workflow.Batch(requests, onSuccess, onComplete: onComplete);
    }

    /// <summary>A batch's optional callback <paramref name="field"/> (a task); <paramref name="bad"/> when given and invalid.</summary>
    private TaskRequest? ReadCallback(JsonElement batch, string field, List<FieldError> errors, out bool bad)
    {
        bad = false;
        if (!batch.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        var request = tasks.ReadTask(value, $"batch.{field}.", errors);
        bad = request is null;
        return request;
    }
}
