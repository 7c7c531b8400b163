using System.Text.Json;

namespace Conveyor.AspNetCore.Requests;

/// <summary>Reads the body of a bulk retry or purge (<see cref="Contracts.TaskFilterBody"/>) into a <see cref="TaskFilter"/>,
/// naming every problem's field, as the enqueue reader does.</summary>
internal static class TaskFilterReader
{
    private const string Fields = "state, task, queue, finishedAfter, finishedBefore, limit, all";

    /// <summary>The filter of <paramref name="body"/> for a retry (<paramref name="purge"/> false) or a purge; problems go
    /// to <paramref name="errors"/>, including the filter's own rules (<see cref="TaskFilter.Validate"/>) and an
    /// unnarrowed filter without <c>"all": true</c>.</summary>
    public static TaskFilter Read(JsonElement body, bool purge, List<FieldError> errors)
    {
        var filter = new TaskFilter();
        var all = false;
        var before = errors.Count;
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
                case "state":
                    if (value.ValueKind == JsonValueKind.String && TaskStates.TryParseApiName(value.GetString(), out var state))
                    {
                        filter = filter with { State = state };
                    }
                    else
                    {
                        errors.Add(new(field, $"{(value.ValueKind == JsonValueKind.String ? $"'{value.GetString()}'" : EnqueueRequestReader.Describe(value))} is not a state: " +
                            (purge ? "dead, cancelled, expired or succeeded" : "dead, cancelled or expired")));
                    }
                    break;
                case "task":
                    filter = filter with { Task = ReadString(value, field, errors) };
                    break;
                case "queue":
                    filter = filter with { Queue = ReadString(value, field, errors) };
                    break;
                case "finishedAfter":
                    filter = filter with { FinishedAfter = ReadTime(value, field, errors) };
                    break;
                case "finishedBefore":
                    filter = filter with { FinishedBefore = ReadTime(value, field, errors) };
                    break;
                case "limit":
                    if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var limit))
                    {
                        filter = filter with { Limit = limit };
                    }
                    else
                    {
                        errors.Add(new(field, $"must be a whole number from 1 to {TaskFilter.MaxLimit}, not {(value.ValueKind == JsonValueKind.Number ? value.GetRawText() : EnqueueRequestReader.Describe(value))}"));
                    }
                    break;
                case "all":
                    if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    {
                        all = value.GetBoolean();
                    }
                    else
                    {
                        errors.Add(new(field, $"must be true or false, not {EnqueueRequestReader.Describe(value)}"));
                    }
                    break;
                default:
                    errors.Add(new(field, $"is not a field of a task filter; known fields: {Fields}"));
                    break;
            }
        }
        var reported = errors.Skip(before).Select(e => e.Field).ToHashSet(StringComparer.Ordinal);
        errors.AddRange(filter.Validate(purge).Where(e => !reported.Contains(e.Field)));
        if (!filter.IsNarrowed && !all && !reported.Contains("all"))
        {
            errors.Add(new("all", $"give task, queue, finishedAfter or finishedBefore to choose the tasks, or \"all\": true to " +
                $"{(purge ? "purge" : "retry")} every {filter.State.ToApiName()} task"));
        }
        return filter;
    }

    private static string? ReadString(JsonElement value, string field, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }
        errors.Add(new(field, $"must be a string, not {EnqueueRequestReader.Describe(value)}"));
        return null;
    }

    private static DateTimeOffset? ReadTime(JsonElement value, string field, List<FieldError> errors)
    {
        if (ApiValues.TryReadTime(value, out var time) is { } problem)
        {
            errors.Add(new(field, problem));
            return null;
        }
        return time;
    }
}
