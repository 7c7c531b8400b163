using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conveyor.Testing;

/// <summary>
/// Assertions on what was enqueued to an <see cref="InMemoryBackend"/>, in any state (a task that already ran was
/// enqueued too). A task matches on its name, on arguments equal as JSON (property order and number formatting do not
/// matter), on its queue when one is given, and on a predicate when one is given. A failed assertion throws
/// <see cref="EnqueuedTaskAssertionException"/>, whose message lists every task that was enqueued.
/// </summary>
/// <remarks>Arguments are compared as JSON: pass the arguments object the code under test passes (serialized with
/// Conveyor's own settings, camelCase), an anonymous object with the same properties, or a <see cref="JsonElement"/>
/// or <see cref="JsonNode"/> of the JSON expected.</remarks>
public static class EnqueuedTaskAssertions
{
    /// <summary>Asserts that at least one task matches; returns every match, oldest first.</summary>
    /// <param name="backend">The backend the code under test enqueued to.</param>
    /// <param name="task">Task name.</param>
    /// <param name="args">Expected arguments, compared as JSON; null for any.</param>
    /// <param name="queue">Expected queue; null for any.</param>
    /// <param name="where">Any further condition; null for none.</param>
    public static IReadOnlyList<TaskRecord> AssertEnqueued(this InMemoryBackend backend, string task, object? args = null, string? queue = null, Func<TaskRecord, bool>? where = null)
    {
        var (all, matches) = Find(backend, task, args, queue, where);
        if (matches.Count == 0)
        {
            throw new EnqueuedTaskAssertionException(Describe("Expected", task, args, queue, where, "to have been enqueued, but none matched.", all));
        }
        return matches;
    }

    /// <summary>Asserts that exactly one task matches, and returns it (River's <c>RequireInserted</c>).</summary>
    /// <inheritdoc cref="AssertEnqueued" path="/param"/>
    public static TaskRecord RequireEnqueued(this InMemoryBackend backend, string task, object? args = null, string? queue = null, Func<TaskRecord, bool>? where = null)
    {
        var (all, matches) = Find(backend, task, args, queue, where);
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new EnqueuedTaskAssertionException(Describe("Expected one", task, args, queue, where, "to have been enqueued, but none matched.", all)),
            _ => throw new EnqueuedTaskAssertionException(Describe("Expected one", task, args, queue, where,
                $"to have been enqueued, but {matches.Count} matched.", all)),
        };
    }

    /// <summary>Asserts that no task matches.</summary>
    /// <inheritdoc cref="AssertEnqueued" path="/param"/>
    public static void AssertNotEnqueued(this InMemoryBackend backend, string task, object? args = null, string? queue = null, Func<TaskRecord, bool>? where = null)
    {
        var (all, matches) = Find(backend, task, args, queue, where);
        if (matches.Count > 0)
        {
            throw new EnqueuedTaskAssertionException(Describe("Expected no", task, args, queue, where,
                $"to have been enqueued, but {matches.Count} matched.", all));
        }
    }

    private static (IReadOnlyList<TaskRecord> All, List<TaskRecord> Matches) Find(InMemoryBackend backend, string task, object? args, string? queue, Func<TaskRecord, bool>? where)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentException.ThrowIfNullOrEmpty(task);
        var expected = args is null ? null : ToNode(args);
        var all = backend.GetTasks();
        var matches = all.Where(t =>
            string.Equals(t.Task, task, StringComparison.Ordinal)
            && (queue is null || string.Equals(t.Queue, queue, StringComparison.Ordinal))
            && (expected is null || JsonArgs.AreEqual(expected, t.Args))
            && (where is null || where(t))).ToList();
        return (all, matches);
    }

    private static JsonNode? ToNode(object args) => args switch
    {
        JsonNode node => node,
        JsonElement element => JsonNode.Parse(element.GetRawText()),
        _ => JsonSerializer.SerializeToNode(args, args.GetType(), ConveyorJson.Options),
    };

    private static string Describe(string expectation, string task, object? args, string? queue, Func<TaskRecord, bool>? where, string outcome, IReadOnlyList<TaskRecord> all)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{expectation} task '{task}'");
        if (args is not null)
        {
            text.Append(CultureInfo.InvariantCulture, $" with args {ToNode(args)?.ToJsonString() ?? "null"}");
        }
        if (queue is not null)
        {
            text.Append(CultureInfo.InvariantCulture, $" in queue '{queue}'");
        }
        if (where is not null)
        {
            text.Append(" matching the predicate");
        }
        text.Append(' ').Append(outcome).AppendLine();
        if (all.Count == 0)
        {
            text.Append("Nothing was enqueued.");
            return text.ToString();
        }
        text.Append(CultureInfo.InvariantCulture, $"Enqueued ({all.Count}):");
        foreach (var t in all)
        {
            text.AppendLine().Append(CultureInfo.InvariantCulture, $"  {t.Task} queue={t.Queue} state={t.State.ToApiName()} args={t.Args ?? "null"}");
        }
        return text.ToString();
    }
}

/// <summary>An assertion of <see cref="EnqueuedTaskAssertions"/> failed; the message lists what was enqueued.</summary>
public sealed class EnqueuedTaskAssertionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public EnqueuedTaskAssertionException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EnqueuedTaskAssertionException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public EnqueuedTaskAssertionException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Equality of task arguments as JSON values.</summary>
internal static class JsonArgs
{
    /// <summary>Whether <paramref name="actualJson"/> (a task's stored arguments; null for none) is the JSON value
    /// <paramref name="expected"/>: objects equal whatever their property order, arrays in order, numbers by value.</summary>
    public static bool AreEqual(JsonNode? expected, string? actualJson)
    {
        JsonNode? actual;
        try
        {
            actual = actualJson is null ? null : JsonNode.Parse(actualJson);
        }
        catch (JsonException)
        {
            return false;
        }
        return AreEqual(expected, actual);
    }

    private static bool AreEqual(JsonNode? x, JsonNode? y)
    {
        switch (x, y)
        {
            case (null, null):
                return true;
            case (JsonObject a, JsonObject b):
                return a.Count == b.Count && a.All(p => b.TryGetPropertyValue(p.Key, out var other) && AreEqual(p.Value, other));
            case (JsonArray a, JsonArray b):
                return a.Count == b.Count && a.Select((item, i) => AreEqual(item, b[i])).All(equal => equal);
            case (JsonValue a, JsonValue b):
                var kind = a.GetValueKind();
                if (kind != b.GetValueKind())
                {
                    return false;
                }
                return kind switch
                {
                    JsonValueKind.Number => SameNumber(a.ToJsonString(), b.ToJsonString()),
                    JsonValueKind.String => string.Equals(a.GetValue<string>(), b.GetValue<string>(), StringComparison.Ordinal),
                    _ => true, // true, false, null: the kind is the value
                };
            default:
                return false;
        }
    }

    // By value, from the JSON text: 1, 1.0 and 1e0 are one number, whatever CLR type a node holds it in.
    private static bool SameNumber(string x, string y) =>
        decimal.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out var m) && decimal.TryParse(y, NumberStyles.Float, CultureInfo.InvariantCulture, out var n)
            ? m == n
            : double.Parse(x, NumberStyles.Float, CultureInfo.InvariantCulture).Equals(double.Parse(y, NumberStyles.Float, CultureInfo.InvariantCulture));
}
