using System.Text.Json;

namespace Conveyor;

/// <summary>
/// The JSON form of a task event, shared by the event stream (<c>GET /api/v1/events</c>) and the bridge between
/// processes: <c>{"type":"succeeded","taskId":"…","task":"…","queue":"…","state":"succeeded","attempt":1,
/// "at":"…","workerId":"…","durationMs":1.5,"error":{"type":"…","message":"…"},"retryAt":"…","origin":"…","workflowId":"…","stepId":"…"}</c>,
/// members that do not apply left out. An error's stack trace is not carried, and its message is cut to
/// <see cref="MaxErrorMessageLength"/> characters: events are for watching; the task's page has the rest.
/// </summary>
public static class TaskEventJson
{
    /// <summary>Longest error message carried, in characters.</summary>
    public const int MaxErrorMessageLength = 500;

    /// <summary>Writes <paramref name="taskEvent"/> as one JSON object.</summary>
    public static void Write(Utf8JsonWriter writer, TaskEvent taskEvent)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(taskEvent);
        writer.WriteStartObject();
        writer.WriteString("type", taskEvent.Kind.ToApiName());
        writer.WriteString("taskId", taskEvent.TaskId);
        writer.WriteString("task", taskEvent.Task);
        writer.WriteString("queue", taskEvent.Queue);
        writer.WriteString("state", taskEvent.State.ToApiName());
        if (taskEvent.Attempt > 0)
        {
            writer.WriteNumber("attempt", taskEvent.Attempt);
        }
        writer.WriteString("at", taskEvent.At);
        if (taskEvent.WorkerId is { } worker)
        {
            writer.WriteString("workerId", worker);
        }
        if (taskEvent.Duration is { } duration)
        {
            writer.WriteNumber("durationMs", Math.Round(duration.TotalMilliseconds, 3));
        }
        if (taskEvent.Error is { } error)
        {
            writer.WriteStartObject("error");
            writer.WriteString("type", error.Type);
            writer.WriteString("message", error.Message.Length > MaxErrorMessageLength ? error.Message[..MaxErrorMessageLength] : error.Message);
            writer.WriteEndObject();
        }
        if (taskEvent.RetryAt is { } retryAt)
        {
            writer.WriteString("retryAt", retryAt);
        }
        if (taskEvent.Origin is { } origin)
        {
            writer.WriteString("origin", origin);
        }
        if (taskEvent.WorkflowId is { } workflowId)
        {
            writer.WriteString("workflowId", workflowId);
            if (taskEvent.StepId is { } stepId)
            {
                writer.WriteString("stepId", stepId);
            }
        }
        writer.WriteEndObject();
    }

    /// <summary>The JSON text of one event.</summary>
    public static string ToJson(TaskEvent taskEvent)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            Write(writer, taskEvent);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Reads an event written by <see cref="Write"/>; throws <see cref="FormatException"/> when it is not one.</summary>
    public static TaskEvent Read(JsonElement element)
    {
        try
        {
            if (!TaskEventKinds.TryParseApiName(element.GetProperty("type").GetString(), out var kind)
                || !TaskStates.TryParseApiName(element.GetProperty("state").GetString(), out var state))
            {
                throw new FormatException("Unknown event type or state.");
            }
            TaskError? error = null;
            if (element.TryGetProperty("error", out var e))
            {
                error = new TaskError(e.GetProperty("type").GetString() ?? "", e.GetProperty("message").GetString() ?? "");
            }
            return new TaskEvent
            {
                Kind = kind,
                State = state,
                TaskId = element.GetProperty("taskId").GetGuid(),
                Task = element.GetProperty("task").GetString() ?? "",
                Queue = element.GetProperty("queue").GetString() ?? "",
                Attempt = element.TryGetProperty("attempt", out var attempt) ? attempt.GetInt32() : 0,
                At = element.GetProperty("at").GetDateTimeOffset(),
                WorkerId = element.TryGetProperty("workerId", out var worker) ? worker.GetString() : null,
                Duration = element.TryGetProperty("durationMs", out var duration) ? TimeSpan.FromMilliseconds(duration.GetDouble()) : null,
                Error = error,
                RetryAt = element.TryGetProperty("retryAt", out var retryAt) ? retryAt.GetDateTimeOffset() : null,
                Origin = element.TryGetProperty("origin", out var origin) ? origin.GetString() : null,
                WorkflowId = element.TryGetProperty("workflowId", out var workflowId) ? workflowId.GetGuid() : null,
                StepId = element.TryGetProperty("stepId", out var stepId) ? stepId.GetString() : null,
            };
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new FormatException("Not a task event: " + ex.Message, ex);
        }
    }
}
