using System.Globalization;
using System.Text.Json;

namespace Conveyor.Backends;

/// <summary>
/// The compact text forms in which backends keep a task's history beside its row or hash, so that
/// recording a transition or an error costs no extra row, key or index write:
/// transitions as <c>state:unixms|state:unixms|…</c>, attempt errors as one JSON object a line.
/// </summary>
public static class TaskHistoryText
{
    /// <summary>Reads <c>state:unixms|…</c>; malformed entries are skipped.</summary>
    public static List<TaskTransition> ParseTransitions(string? history)
    {
        var transitions = new List<TaskTransition>();
        if (string.IsNullOrEmpty(history))
        {
            return transitions;
        }
        foreach (var entry in history.Split('|', StringSplitOptions.RemoveEmptyEntries))
        {
            var colon = entry.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0
                && int.TryParse(entry.AsSpan(0, colon), NumberStyles.Integer, CultureInfo.InvariantCulture, out var state)
                && long.TryParse(entry.AsSpan(colon + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out var at))
            {
                transitions.Add(new TaskTransition((TaskState)state, DateTimeOffset.FromUnixTimeMilliseconds(at)));
            }
        }
        return transitions;
    }

    /// <summary>One transition entry, without the separator.</summary>
    public static string FormatTransition(TaskState state, long unixMilliseconds) =>
        string.Create(CultureInfo.InvariantCulture, $"{(int)state}:{unixMilliseconds}");

    /// <summary>Reads attempt errors kept one JSON object a line.</summary>
    public static List<AttemptError> ParseErrors(string? lines)
    {
        var errors = new List<AttemptError>();
        if (string.IsNullOrEmpty(lines))
        {
            return errors;
        }
        foreach (var line in lines.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            errors.Add(JsonSerializer.Deserialize<AttemptError>(line, ConveyorJson.Options)!);
        }
        return errors;
    }

    /// <summary>One attempt error as a line of JSON.</summary>
    public static string FormatError(AttemptError error) => JsonSerializer.Serialize(error, ConveyorJson.Options);

    /// <summary>Attempt errors as kept: one JSON object a line; null for none.</summary>
    public static string? FormatErrors(IReadOnlyList<AttemptError> errors) =>
        errors is null || errors.Count == 0 ? null : string.Join('\n', errors.Select(FormatError));
}
