using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor;

/// <summary>What happened to a workflow as a whole (its steps' transitions are <see cref="TaskEvent"/>s that carry
/// <see cref="TaskEvent.WorkflowId"/>).</summary>
public enum WorkflowEventKind
{
    /// <summary>Stored, its first steps ready or scheduled.</summary>
    Created,
    /// <summary>Every step succeeded.</summary>
    Succeeded,
    /// <summary>A step failed, and the workflow ended as its failure policy says (docs/workflows.md).</summary>
    Failed,
    /// <summary>Cancelled by hand.</summary>
    Cancelled,
    /// <summary>Runs again from its failed steps (a retry by hand).</summary>
    Retried,
}

/// <summary>
/// A transition of a workflow. <see cref="WorkflowEventKind.Created"/>, <see cref="WorkflowEventKind.Cancelled"/> and
/// <see cref="WorkflowEventKind.Retried"/> are raised by the process that made the change, after the store acknowledged it.
/// A workflow's end by its steps is written in the same transaction or script as the step that ended it, which raises no
/// event of its own: the process that raised that step's event reads the workflow's state and raises
/// <see cref="WorkflowEventKind.Succeeded"/> or <see cref="WorkflowEventKind.Failed"/>, with <see cref="At"/> the stored end
/// time; a subscriber sees each end once even when two processes raise it (the last two steps of a chord ending at once on
/// two workers). While nobody subscribes, no event is built and nothing is read.
/// </summary>
public sealed record WorkflowEvent
{
    /// <summary>What happened.</summary>
    public required WorkflowEventKind Kind { get; init; }
    /// <summary>The workflow.</summary>
    public required Guid WorkflowId { get; init; }
    /// <summary>Its name, or null.</summary>
    public string? Name { get; init; }
    /// <summary>Its state after the change.</summary>
    public required WorkflowState State { get; init; }
    /// <summary>When it happened: for an end, the workflow's stored end time.</summary>
    public required DateTimeOffset At { get; init; }
    /// <summary>The process that raised it (its <see cref="WorkerStatus.WorkerId"/>).</summary>
    public string? Origin { get; init; }

    /// <summary>Whether it is an end (succeeded, failed or cancelled): the kinds a subscriber sees once per end.</summary>
    public bool IsEnd => Kind is WorkflowEventKind.Succeeded or WorkflowEventKind.Failed or WorkflowEventKind.Cancelled;
}

/// <summary>Names of workflow event kinds in the HTTP API, and their JSON form.</summary>
public static class WorkflowEventKinds
{
    /// <summary>The lower-case name: <c>created</c>, <c>succeeded</c>, <c>failed</c>, <c>cancelled</c>, <c>retried</c>.</summary>
    public static string ToApiName(this WorkflowEventKind kind) => kind switch
    {
        WorkflowEventKind.Created => "created",
        WorkflowEventKind.Succeeded => "succeeded",
        WorkflowEventKind.Failed => "failed",
        WorkflowEventKind.Cancelled => "cancelled",
        WorkflowEventKind.Retried => "retried",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>Parses a lower-case name; false when unknown.</summary>
    public static bool TryParseApiName(string? name, out WorkflowEventKind kind)
    {
        foreach (var candidate in Enum.GetValues<WorkflowEventKind>())
        {
            if (string.Equals(candidate.ToApiName(), name, StringComparison.OrdinalIgnoreCase))
            {
                kind = candidate;
                return true;
            }
        }
        kind = default;
        return false;
    }

    /// <summary>Writes the event as one JSON object, shared by the event stream (<c>event: workflow</c>) and the bridge
    /// between processes: <c>{"type":"succeeded","workflowId":"…","name":"…","state":"succeeded","at":"…","origin":"…"}</c>.</summary>
    public static void Write(Utf8JsonWriter writer, WorkflowEvent workflowEvent)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(workflowEvent);
        writer.WriteStartObject();
        writer.WriteString("type", workflowEvent.Kind.ToApiName());
        writer.WriteString("workflowId", workflowEvent.WorkflowId);
        if (workflowEvent.Name is { } name)
        {
            writer.WriteString("name", name);
        }
        writer.WriteString("state", workflowEvent.State.ToApiName());
        writer.WriteString("at", workflowEvent.At);
        if (workflowEvent.Origin is { } origin)
        {
            writer.WriteString("origin", origin);
        }
        writer.WriteEndObject();
    }

    /// <summary>The JSON text of one event.</summary>
    public static string ToJson(WorkflowEvent workflowEvent)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(160);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            Write(writer, workflowEvent);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Reads an event written by <see cref="Write"/>; throws <see cref="FormatException"/> when it is not one.</summary>
    public static WorkflowEvent Read(JsonElement element)
    {
        try
        {
            if (!TryParseApiName(element.GetProperty("type").GetString(), out var kind)
                || !WorkflowStates.TryParseApiName(element.GetProperty("state").GetString(), out var state))
            {
                throw new FormatException("Unknown workflow event type or state.");
            }
            return new WorkflowEvent
            {
                Kind = kind,
                WorkflowId = element.GetProperty("workflowId").GetGuid(),
                Name = element.TryGetProperty("name", out var name) ? name.GetString() : null,
                State = state,
                At = element.GetProperty("at").GetDateTimeOffset(),
                Origin = element.TryGetProperty("origin", out var origin) ? origin.GetString() : null,
            };
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new FormatException("Not a workflow event: " + ex.Message, ex);
        }
    }
}
