using System.Text.Json;

namespace Conveyor.AspNetCore.Requests;

/// <summary>
/// Reads the <c>retry</c> object of an enqueue body into a <see cref="RetryPolicy"/>, naming every problem's field
/// (<c>retry.jitter</c>, <c>tasks[2].retry.retryOn[0]</c>). Fields left out keep the task's own policy (its registration
/// in the serving process, else <see cref="RetryPolicy.Default"/>): <c>{"retryOn": ["HttpRequestException"]}</c> keeps the
/// task's backoff. The ranges (delays, jitter, names) are checked by <see cref="TaskRequestValidator"/> with the rest of
/// the request.
/// </summary>
internal static class RetryRequestReader
{
    private const string Fields = "backoff, delay, maxDelay, jitter, retryOn, neverRetryOn";

    /// <summary>The policy the object asks for over <paramref name="taskPolicy"/>; null when it is not an object.</summary>
    public static RetryPolicy? Read(JsonElement value, string field, RetryPolicy taskPolicy, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new(field, $"must be an object such as {{\"backoff\": \"fixed\", \"delay\": \"PT5S\"}}, not {EnqueueRequestReader.Describe(value)}"));
            return null;
        }
        RetryBackoff? backoff = null;
        TimeSpan? delay = null;
        TimeSpan? maxDelay = null;
        double? jitter = null;
        string[]? retryOn = null;
        string[]? neverRetryOn = null;
        foreach (var property in value.EnumerateObject())
        {
            var name = $"{field}.{property.Name}";
            var item = property.Value;
            if (item.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            switch (property.Name)
            {
                case "backoff":
                    backoff = ReadBackoff(item, name, errors);
                    break;
                case "delay":
                    delay = ReadDuration(item, name, errors);
                    break;
                case "maxDelay":
                    maxDelay = ReadDuration(item, name, errors);
                    break;
                case "jitter":
                    if (item.ValueKind == JsonValueKind.Number)
                    {
                        jitter = item.GetDouble();
                    }
                    else
                    {
                        errors.Add(new(name, $"must be a number from 0 to 1, not {EnqueueRequestReader.Describe(item)}"));
                    }
                    break;
                case "retryOn":
                    retryOn = ReadNames(item, name, errors);
                    break;
                case "neverRetryOn":
                    neverRetryOn = ReadNames(item, name, errors);
                    break;
                default:
                    errors.Add(new(name, $"is not a field of retry; known fields: {Fields}"));
                    break;
            }
        }
        // A maxDelay given alone asks for a growing delay: exponential.
        var kind = backoff ?? (maxDelay is not null ? RetryBackoff.Exponential : taskPolicy.Backoff);
        var baseDelay = delay ?? taskPolicy.BaseDelay;
        TimeSpan cap;
        if (kind == RetryBackoff.Fixed)
        {
            if (maxDelay is not null)
            {
                errors.Add(new(field + ".maxDelay", "does not apply to a fixed backoff, which waits its delay every time: leave it out, or give \"backoff\": \"exponential\""));
            }
            cap = baseDelay;
        }
        else
        {
            // The task's cap when its backoff grows; a fixed task's cap is its delay, so the default cap instead.
            cap = maxDelay ?? (taskPolicy.Backoff == RetryBackoff.Exponential ? taskPolicy.MaxDelay : RetryPolicy.Default.MaxDelay);
        }
        return new RetryPolicy(baseDelay, cap, jitter ?? taskPolicy.Jitter)
        {
            RetryOn = retryOn ?? taskPolicy.RetryOn,
            NeverRetryOn = neverRetryOn ?? taskPolicy.NeverRetryOn,
        };
    }

    private static RetryBackoff? ReadBackoff(JsonElement value, string field, List<FieldError> errors)
    {
        var text = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
        switch (text)
        {
            case "exponential":
                return RetryBackoff.Exponential;
            case "fixed":
                return RetryBackoff.Fixed;
            default:
                errors.Add(new(field, text is null
                    ? $"must be \"exponential\" or \"fixed\", not {EnqueueRequestReader.Describe(value)}"
                    : $"'{text}' is not a backoff: \"exponential\" (doubling up to maxDelay) or \"fixed\" (the same delay every time)"));
                return null;
        }
    }

    private static TimeSpan? ReadDuration(JsonElement value, string field, List<FieldError> errors)
    {
        if (ApiValues.TryReadDuration(value, out var duration) is { } problem)
        {
            errors.Add(new(field, problem));
            return null;
        }
        return duration;
    }

    private static string[]? ReadNames(JsonElement value, string field, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new(field, $"must be an array of exception type names such as [\"HttpRequestException\", \"System.TimeoutException\"], not {EnqueueRequestReader.Describe(value)}"));
            return null;
        }
        var names = new List<string>();
        var index = 0;
        var valid = true;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.String)
            {
                names.Add(item.GetString()!);
            }
            else
            {
                errors.Add(new($"{field}[{index}]", $"must be a string naming an exception type, not {EnqueueRequestReader.Describe(item)}"));
                valid = false;
            }
            index++;
        }
        // With an entry left out, the names' indexes would not be the request's: the names are checked no further.
        return valid ? [.. names] : null;
    }
}
