namespace Conveyor.Backends;

/// <summary>
/// How a backend stores the exception lists of a task's <see cref="RetryPolicy"/> (<see cref="RetryPolicy.RetryOn"/>,
/// <see cref="RetryPolicy.NeverRetryOn"/>): as two reserved headers, comma-separated, beside the delays and jitter that
/// every backend keeps in fields of their own. Headers are stored by every backend already, so the lists need no new
/// column, field or migration. A backend writes <see cref="ToStored"/> where it writes a message's headers and reads
/// back with <see cref="FromStored"/>, so that a message and a record read back equal the message enqueued: the reserved
/// headers never show in <see cref="TaskMessage.Headers"/> or <see cref="TaskRecord.Headers"/>.
/// </summary>
public static class RetryHeaders
{
    /// <summary>The header that holds <see cref="RetryPolicy.RetryOn"/>: <c>conveyor-retry-on</c>.</summary>
    public const string RetryOn = "conveyor-retry-on";

    /// <summary>The header that holds <see cref="RetryPolicy.NeverRetryOn"/>: <c>conveyor-never-retry-on</c>.</summary>
    public const string NeverRetryOn = "conveyor-never-retry-on";

    /// <summary>Whether <paramref name="name"/> is one of the reserved headers, which an enqueue may not set itself.</summary>
    public static bool IsReserved(string name) =>
        string.Equals(name, RetryOn, StringComparison.OrdinalIgnoreCase) || string.Equals(name, NeverRetryOn, StringComparison.OrdinalIgnoreCase);

    /// <summary>The headers to store for <paramref name="message"/>: its own, plus the reserved ones for the lists of its
    /// policy that are not empty. The message's own headers (the same instance) when both lists are empty.</summary>
    public static IReadOnlyDictionary<string, string>? ToStored(TaskMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var retry = message.Retry;
        if (retry.RetryOn.Count == 0 && retry.NeverRetryOn.Count == 0)
        {
            return message.Headers;
        }
        var stored = message.Headers is null
            ? new Dictionary<string, string>(2, StringComparer.Ordinal)
            : new Dictionary<string, string>(message.Headers, StringComparer.Ordinal);
        if (retry.RetryOn.Count > 0)
        {
            stored[RetryOn] = string.Join(',', retry.RetryOn);
        }
        if (retry.NeverRetryOn.Count > 0)
        {
            stored[NeverRetryOn] = string.Join(',', retry.NeverRetryOn);
        }
        return stored;
    }

    /// <summary>The policy and headers of a stored task: <paramref name="retry"/> (its delays and jitter) with the lists
    /// read from <paramref name="stored"/>, and the headers without the reserved ones (null when none is left).
    /// Returns its arguments as they are when no reserved header is stored.</summary>
    public static (RetryPolicy Retry, IReadOnlyDictionary<string, string>? Headers) FromStored(
        RetryPolicy retry, IReadOnlyDictionary<string, string>? stored)
    {
        ArgumentNullException.ThrowIfNull(retry);
        if (stored is null || !(stored.ContainsKey(RetryOn) || stored.ContainsKey(NeverRetryOn)))
        {
            return (retry, stored);
        }
        var headers = new Dictionary<string, string>(stored.Count, StringComparer.Ordinal);
        foreach (var (name, value) in stored)
        {
            if (name is not (RetryOn or NeverRetryOn))
            {
                headers[name] = value;
            }
        }
        retry = retry with
        {
            RetryOn = Split(stored.GetValueOrDefault(RetryOn)),
            NeverRetryOn = Split(stored.GetValueOrDefault(NeverRetryOn)),
        };
        return (retry, headers.Count == 0 ? null : headers);
    }

    private static string[] Split(string? value) =>
        string.IsNullOrEmpty(value) ? [] : value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
